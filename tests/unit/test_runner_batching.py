"""Jobs batched through the runner: each keeps its own row, outcome and attempt.

A fake model (``tests.faults``: the label of a text is its length; ``fault:`` texts
misbehave) and the real runner, database and supervisor. Which jobs shared a batch is
read from the batcher's log line ("batch N: J jobs, ..."), never from timing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.worker.runner import JobRunner
from shared import states
from shared.db.engine import session_scope
from tests.faults import EchoHandler, FakeModels
from tests.unit.fake_runner import endings as _endings
from tests.unit.fake_runner import fake_runner
from tests.unit.fake_runner import in_thread as _in_thread
from tests.unit.fake_runner import message as _message
from tests.unit.fake_runner import row as _row

BATCH_LINE = re.compile(
    r"batch (\d+): (\d+) jobs, (\d+) items, waited ([\d.]+) ms, forward [\d.]+ ms \(jobs (.*)\)"
)


@pytest.fixture
def runner(db_url: str, tmp_path: Path) -> Iterator[JobRunner]:
    with fake_runner(db_url, tmp_path, lease_seconds=5) as runner:
        yield runner


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def _waiting(runner: JobRunner) -> int:
    line = runner.batcher._line("echo")
    with line.cond:
        return len(line.waiting)


def _running(runner: JobRunner) -> list[int]:
    line = runner.batcher._line("echo")
    with line.cond:
        return [len(batch) for batch in line.running]


def _batches(caplog: pytest.LogCaptureFixture) -> dict[str, tuple[int, int, float]]:
    """job id -> (batch number, jobs in it, wait in ms), from the batcher's log."""
    found = {}
    for record in caplog.records:
        match = BATCH_LINE.match(record.getMessage())
        if match:
            for job_id in match.group(5).split(","):
                found[job_id] = (int(match.group(1)), int(match.group(2)), float(match.group(4)))
    return found


def test_a_lone_job_runs_in_a_batch_of_one_without_waiting(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.batching")
    message = _message("alone")
    assert runner.run(message, fallback_id="x") == "SUCCEEDED"
    _number, jobs, waited = _batches(caplog)[message["id"]]
    assert jobs == 1
    assert waited < FakeModels().spec("echo").batching.max_wait_ms


def test_a_bad_input_in_a_batch_fails_alone_and_the_cancelled_job_leaves_the_line(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.batching")
    first = _message("fault:wait=0.5")  # holds the model while the others queue
    good1, bad, good2, doomed = (
        _message("good one"),
        _message("fault:raise"),
        _message(["fine", "and dandy"]),
        _message("cancel me"),
    )
    threads = [_in_thread(runner, first)]
    _until(lambda: _running(runner) == [1])
    threads += [_in_thread(runner, m) for m in (good1, bad, good2, doomed)]
    _until(lambda: _waiting(runner) == 4)
    with session_scope(runner.db_url) as session:
        assert states.cancel(session, doomed["id"]) is states.State.RUNNING
    _until(lambda: _waiting(runner) == 3)  # it left the line on its own
    for thread, _out in threads:
        thread.join(10)
    assert [out for _t, out in threads] == [
        ["SUCCEEDED"],
        ["SUCCEEDED"],
        ["FAILED"],
        ["SUCCEEDED"],
        ["CANCELLED"],
    ]
    batches = _batches(caplog)
    assert batches[good1["id"]][:2] == batches[bad["id"]][:2] == batches[good2["id"]][:2]
    assert batches[good1["id"]][1] == 3 and doomed["id"] not in batches
    # Each result equals the job's unbatched one.
    echo = EchoHandler()
    assert _row(runner, good1["id"]).result == {"label": "len-8", "score": 1.0}
    assert _row(runner, good2["id"]).result == echo.predict(None, ["fine", "and dandy"], None)  # type: ignore[arg-type]
    failed = _row(runner, bad["id"])
    assert failed.error is not None and failed.error.type == "internal_error"
    assert "injected bug" in failed.error.message
    assert _endings(runner, doomed["id"]) == ["cancelled"]
    assert _endings(runner, good1["id"]) == ["succeeded"]


def test_a_job_cancelled_inside_a_running_batch_ends_cancelled_the_other_succeeds(
    runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.batching")
    first = _message("fault:wait=0.5")
    slow, other = _message("fault:wait=0.6"), _message("bystander")
    threads = [_in_thread(runner, first)]
    _until(lambda: _running(runner) == [1])
    threads += [_in_thread(runner, m) for m in (slow, other)]
    _until(lambda: _waiting(runner) == 2)
    _until(lambda: _running(runner) == [2])  # the two run together now
    with session_scope(runner.db_url) as session:
        assert states.cancel(session, slow["id"]) is states.State.RUNNING
    for thread, _out in threads:
        thread.join(10)
    assert [out for _t, out in threads] == [["SUCCEEDED"], ["CANCELLED"], ["SUCCEEDED"]]
    batches = _batches(caplog)
    assert batches[slow["id"]][:2] == batches[other["id"]][:2] and batches[other["id"]][1] == 2
    assert _row(runner, slow["id"]).result is None
    assert _row(runner, other["id"]).result == {"label": "len-9", "score": 1.0}
    assert _endings(runner, slow["id"]) == ["cancelled"]
