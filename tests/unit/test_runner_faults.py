"""The runner under faults, with a fake model through its constructor seams (no Celery).

Out of memory, time limits (cooperative or not), cancellation of a running job,
two deliveries of one job at once, a poison job, an id reused for other inputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.worker.runner import JobRunner, Poisoned
from shared import states
from shared.db import repo
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.jobs import JobView, parse_job
from tests.faults import EchoHandler, OutOfMemoryError
from tests.unit.fake_runner import endings as _endings
from tests.unit.fake_runner import fake_runner
from tests.unit.fake_runner import in_thread as _in_thread
from tests.unit.fake_runner import message as _message
from tests.unit.fake_runner import row as _row


@pytest.fixture
def runner(db_url: str, tmp_path: Path) -> Iterator[JobRunner]:
    with fake_runner(db_url, tmp_path, lease_seconds=0.5, time_limits={"nlp": 0.6}) as runner:
        yield runner


def _wait_state(runner: JobRunner, job_id: str, state: str, timeout: float = 10) -> JobView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(runner.db_url) as session:
            job = repo.get_job(session, job_id)
            if job is not None and job.state == state:
                return repo.to_view(job)
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} never reached {state}")


def test_out_of_memory_splits_the_batch_and_the_job_succeeds(runner: JobRunner) -> None:
    message = _message(["a", "bb", "fault:oom>1", "dddd"])
    assert runner.run(message, fallback_id="x") == "SUCCEEDED"
    result = _row(runner, message["id"]).result
    assert [r.get("label", r.get("fault")) for r in result] == [
        "len-1",
        "len-2",
        "fault:oom>1",
        "len-4",
    ]


def test_out_of_memory_on_one_input_fails_the_job_clearly(runner: JobRunner) -> None:
    message = _message(["fault:oom>0"])
    assert runner.run(message, fallback_id="x") == "FAILED"
    job = _row(runner, message["id"])
    assert job.error is not None and job.error.type == "model_failure"
    assert "out of memory on a single input" in job.error.message


class _LargeAlone(EchoHandler):
    """Out of memory on more than one text; each text alone takes 0.3 s and never checks."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def predict(self, loaded: Any, items: list[Any], params: Any) -> list[Any]:
        if len(items) > 1:
            raise OutOfMemoryError(f"CUDA out of memory on a batch of {len(items)} (injected)")
        time.sleep(0.3)
        self.ran.append(items[0])
        return super().predict(loaded, items, params)


def test_a_job_split_for_memory_stops_between_halves_at_its_time_limit(
    db_url: str, tmp_path: Path
) -> None:
    handler = _LargeAlone()
    message = _message(["a", "b", "c", "d"])  # split down to four passes of 0.3 s each
    with fake_runner(
        db_url, tmp_path, handlers=lambda task: handler, time_limits={"nlp": 0.5}
    ) as runner:
        assert runner.run(message, fallback_id="x") == "FAILED"
        job = _row(runner, message["id"])
    assert job.error is not None and job.error.type == "timeout"
    # The limit passes during "b": "c" and "d" never run (before, all four did).
    assert handler.ran in (["a"], ["a", "b"]), handler.ran


def test_a_job_that_checks_stops_at_its_time_limit(runner: JobRunner) -> None:
    message = _message("fault:wait=30")
    began = time.monotonic()
    assert runner.run(message, fallback_id="x") == "FAILED"
    assert time.monotonic() - began < 10
    job = _row(runner, message["id"])
    assert job.error is not None and job.error.type == "timeout"
    assert "time limit of 0.6 s" in job.error.message
    assert _endings(runner, message["id"]) == ["timeout"]


def test_a_stuck_job_is_failed_at_its_limit_and_its_late_result_discarded(
    runner: JobRunner,
) -> None:
    message = _message("fault:sleep=2.5")
    thread, out = _in_thread(runner, message)
    failed = _wait_state(runner, message["id"], "FAILED", timeout=2.2)
    assert failed.error is not None and failed.error.type == "timeout"
    assert thread.is_alive()  # still stuck in its "forward pass"
    thread.join(10)
    assert out == ["FAILED"]
    job = _row(runner, message["id"])
    assert job.result is None and job.finished_at == failed.finished_at
    assert _endings(runner, message["id"]) == ["timeout"]


def test_cancelling_a_running_job_stops_it_at_its_next_check(runner: JobRunner) -> None:
    message = _message("fault:wait=30")
    thread, out = _in_thread(runner, message)
    _wait_state(runner, message["id"], "RUNNING")
    with session_scope(runner.db_url) as session:
        assert states.cancel(session, message["id"]) is states.State.RUNNING
    thread.join(10)
    assert out == ["CANCELLED"]
    job = _row(runner, message["id"])
    assert job.state == "CANCELLED" and job.result is None
    assert _endings(runner, message["id"]) == ["cancelled"]


def test_two_deliveries_at_once_run_the_handler_once(runner: JobRunner) -> None:
    message = _message(["fault:wait=0.3", "once"])
    first, out1 = _in_thread(runner, message)
    _wait_state(runner, message["id"], "RUNNING")
    second, out2 = _in_thread(runner, message)
    first.join(10)
    second.join(10)
    assert out1 == ["SUCCEEDED"] and out2 == ["SUCCEEDED"]
    job = _row(runner, message["id"])
    assert job.attempts == 1 and job.result[1]["label"] == "len-4"
    assert _endings(runner, message["id"]) == ["succeeded"]


def test_a_job_whose_worker_died_each_time_is_failed_as_poison(runner: JobRunner) -> None:
    message = _message("boom")
    with session_scope(runner.db_url) as session:
        repo.insert_job(session, parse_job(message), inline_limit=1024)
        for n in range(3):  # three workers claimed it and died
            states.start(session, message["id"], worker=f"dead-{n}")
    with pytest.raises(Poisoned, match="started 3 times"):
        runner.run(message, fallback_id="x")
    job = _row(runner, message["id"])
    assert job.state == "FAILED" and job.error is not None and job.error.type == "poison"
    assert job.attempts == 4 and job.result is None


def test_a_reused_id_with_other_inputs_does_not_touch_the_row(runner: JobRunner) -> None:
    message = _message("original")
    assert runner.run(message, fallback_id="x") == "SUCCEEDED"
    before = _row(runner, message["id"])
    assert runner.run({**message, "inputs": "hijacked"}, fallback_id="x") == "SUCCEEDED"
    invalid = {**message, "params": {"top_k": 0}}  # refused before it runs
    assert runner.run(invalid, fallback_id="x") == "FAILED"
    after = _row(runner, message["id"])
    assert after == before and after.result["label"] == "len-8"
    assert len(_endings(runner, message["id"])) == 1


def test_a_bug_in_a_handler_fails_only_its_job(runner: JobRunner) -> None:
    bad, good = _message("fault:raise"), _message("fine")
    assert runner.run(bad, fallback_id="x") == "FAILED"
    job = _row(runner, bad["id"])
    assert job.error is not None and job.error.type == "internal_error"
    assert "injected bug" in job.error.message
    assert runner.run(good, fallback_id="x") == "SUCCEEDED"


def test_a_job_whose_worker_died_runs_alone_on_its_next_attempt(runner: JobRunner) -> None:
    running = _message("fault:wait=0.45")
    suspect = _message("suspect")
    newcomer = _message("newcomer")
    with session_scope(runner.db_url) as session:
        repo.insert_job(session, parse_job(suspect), inline_limit=1024)
        long_ago = utcnow() - timedelta(minutes=1)
        states.start(session, suspect["id"], worker="died", now=long_ago)  # and died
    first, _ = _in_thread(runner, running)
    _wait_state(runner, running["id"], "RUNNING")
    second, out = _in_thread(runner, suspect)
    time.sleep(0.2)
    third, _ = _in_thread(runner, newcomer)
    time.sleep(0.2)
    # The suspect waits for the running job; the newcomer is not even claimed meanwhile.
    assert _row(runner, suspect["id"]).state == "RUNNING"
    assert not _exists(runner, newcomer) or _row(runner, newcomer["id"]).state == "QUEUED"
    for thread in (first, second, third):
        thread.join(10)
    assert out == ["SUCCEEDED"]
    ran = {m["id"]: _row(runner, m["id"]) for m in (running, suspect, newcomer)}
    assert ran[running["id"]].state == "SUCCEEDED"
    assert ran[suspect["id"]].finished_at >= ran[running["id"]].finished_at
    assert ran[newcomer["id"]].started_at >= ran[suspect["id"]].finished_at


def _exists(runner: JobRunner, message: dict[str, Any]) -> bool:
    with session_scope(runner.db_url) as session:
        return repo.get_job(session, message["id"]) is not None


def test_a_second_suspect_is_not_even_claimed_while_the_first_runs_alone(
    runner: JobRunner,
) -> None:
    first, second = _message("fault:wait=0.45"), _message("bystander of a crash")
    long_ago = utcnow() - timedelta(minutes=1)
    with session_scope(runner.db_url) as session:
        for message in (first, second):  # both were running on a worker that died
            repo.insert_job(session, parse_job(message), inline_limit=1024)
            states.start(session, message["id"], worker="died", now=long_ago)
    a, _ = _in_thread(runner, first)
    deadline = time.monotonic() + 10
    while _row(runner, first["id"]).attempts < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    b, out = _in_thread(runner, second)
    time.sleep(0.2)
    # Were the first to kill this worker, the second would lose no attempt: it holds none here.
    assert _row(runner, second["id"]).attempts == 1
    a.join(10)
    b.join(10)
    assert out == ["SUCCEEDED"] and _row(runner, second["id"]).attempts == 2


def test_progress_reported_after_the_last_heartbeat_lands_with_the_outcome(
    db_url: str, tmp_path: Path
) -> None:
    # Heartbeats a minute apart: only the terminal write can carry the job's progress.
    with fake_runner(db_url, tmp_path, heartbeat_seconds=60) as runner:
        message = _message("fault:progress=24")
        assert runner.run(message, fallback_id="x") == "SUCCEEDED"
        assert _row(runner, message["id"]).progress == {
            "stage": "training",
            "step": 24,
            "max_steps": 24,
        }
