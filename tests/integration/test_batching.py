"""Batching through a real worker: RabbitMQ, PostgreSQL, the tiny model, fault inputs.

The worker runs ``python -m tests.faults`` (the real worker; ``fault:`` texts
misbehave) with threads enough to batch. A job that holds the model
(``fault:wait``) makes the jobs behind it queue up in the worker, so they run as
one batch; which jobs shared a batch is read from the worker's log, never from
timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import attempts
from shared.db.engine import session_scope
from shared.jobs import JobView
from tests.faults import WORKER_COMMAND
from tests.helpers import WorkerProcess
from tests.integration.faultenv import MODEL, TASK, FaultEnv, fault_env

BATCH_LINE = re.compile(
    r"batch (\d+): (\d+) jobs, (\d+) items, waited ([\d.]+) ms, forward [\d.]+ ms \(jobs ([^)]*)\)"
)


@pytest.fixture(scope="module")
def env(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultEnv]:
    folder = tmp_path_factory.mktemp("batching")
    with fault_env(tiny_registry, folder) as faults:
        worker = WorkerProcess(
            queues=["nlp"],
            env=faults.env,
            log=folder / "worker.log",
            extra=["--concurrency", "16", "--name", "batching@pipeq-tests"],
            command=WORKER_COMMAND,
        )
        faults.pool.workers.append(worker.start(timeout=180))
        yield faults


def _submit(env: FaultEnv, inputs: object) -> JobView:
    return env.client.submit(TASK, MODEL, inputs)


def _batches(env: FaultEnv) -> dict[str, tuple[int, int, float]]:
    """job id -> (batch number, jobs in the batch, the leader's wait in ms)."""
    found = {}
    for match in BATCH_LINE.finditer(env.pool.logs()):
        for job_id in match.group(5).split(","):
            found[job_id] = (int(match.group(1)), int(match.group(2)), float(match.group(4)))
    return found


def _endings(env: FaultEnv, job_id: str) -> list[str | None]:
    with session_scope(env.client.settings.resolved_database_url) as session:
        return [a.outcome for a in attempts.of_job(session, job_id)]


def test_jobs_behind_a_busy_model_share_a_batch_each_with_its_own_outcome(env: FaultEnv) -> None:
    holder = _submit(env, "fault:wait=2")
    env.wait_state(holder.id, "RUNNING")
    inputs: list[object] = ["it was great", "fault:raise", ["two", "texts"], "rather dull"]
    queued = [_submit(env, item) for item in inputs]
    doomed = _submit(env, "cancel me while I wait")
    for job in (*queued, doomed):
        env.wait_state(job.id, "RUNNING")
    assert env.client.cancel(doomed.id).state == "RUNNING"
    done = [env.client.wait(job.id, timeout=60) for job in (holder, *queued, doomed)]
    assert [job.state for job in done] == [
        "SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED", "CANCELLED"
    ]  # fmt: skip
    bad = done[2]
    assert bad.error is not None and bad.error.type == "internal_error"
    assert "injected bug" in bad.error.message and bad.result is None
    assert done[-1].result is None and _endings(env, doomed.id) == ["cancelled"]
    batches = _batches(env)
    shared = {batches[job.id][0] for job in queued}
    assert len(shared) == 1 and batches[queued[0].id][1] == len(queued)  # one batch of four
    assert doomed.id not in batches and batches[holder.id][1] == 1
    # Each batched result equals the same job's result run alone.
    for job, item in zip(done[1:-1], inputs, strict=True):
        if job.state == "SUCCEEDED":
            alone = env.client.wait(_submit(env, item).id, timeout=60)
            assert alone.result == job.result
            assert _batches(env)[alone.id][1] == 1


def test_a_lone_job_does_not_wait_for_a_batch(env: FaultEnv) -> None:
    job = env.client.wait(_submit(env, "on its own").id, timeout=60)
    assert job.state == "SUCCEEDED"
    _number, jobs, waited = _batches(env)[job.id]
    assert jobs == 1
    assert waited < 5  # text-classification's max_wait_ms: it did not wait for it
