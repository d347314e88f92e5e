"""Faults, tried for real: workers that die, a database and a broker that go away,
jobs that hang, a job delivered twice at once. Real RabbitMQ, PostgreSQL and
worker processes (``tests/integration/faultenv.py``); faults come from
``tests/faults.py`` through the worker's handler seam.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from shared import attempts
from shared.db.engine import session_scope
from shared.jobs import JobView
from shared.messages import celery_body
from tests.faults import WORKER_COMMAND
from tests.helpers import WorkerProcess
from tests.integration.faultenv import MODEL, SECRET, TASK, FaultEnv, fault_env


@pytest.fixture(scope="module")
def faults(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultEnv]:
    with fault_env(tiny_registry, tmp_path_factory.mktemp("faults")) as env:
        yield env


def _endings(env: FaultEnv, job_id: str) -> list[str | None]:
    with session_scope(env.client.settings.resolved_database_url) as session:
        return [a.outcome for a in attempts.of_job(session, job_id)]


def _submit(env: FaultEnv, inputs: object) -> JobView:
    return env.client.submit(TASK, MODEL, inputs)


def test_a_message_that_kills_its_worker_ends_failed_and_dead_lettered(faults: FaultEnv) -> None:
    workers = faults.pool.ensure(4)
    poison = _submit(faults, "fault:exit")
    others = [_submit(faults, f"bystander {i}") for i in range(5)]
    done = faults.client.wait(poison.id, timeout=180)
    assert done.state == "FAILED" and done.error is not None
    assert done.error.type == "poison" and "started 3 times" in done.error.message
    # Three workers died running it; the fourth delivery was failed without running.
    assert sum(1 for worker in workers if not worker.alive) == 3
    assert _endings(faults, poison.id) == ["lost", "lost", "lost", "poison"]
    for job in others:
        assert faults.client.wait(job.id, timeout=120).state == "SUCCEEDED"
    deadline = time.monotonic() + 30
    line = f"dead letter {poison.id} (job {poison.id}, rejected from nlp): done"
    while line not in faults.pool.logs():
        assert time.monotonic() < deadline, "the poison message never reached pipeq-dead"
        time.sleep(0.2)


def test_with_the_database_away_the_outcome_is_written_before_the_ack(
    faults: FaultEnv,
) -> None:
    faults.pool.ensure(1)
    job = _submit(faults, "fault:wait=1.5")
    faults.wait_state(job.id, "RUNNING")
    ended = time.monotonic() + 1.5  # the fault handler's wait: the job's pass is over then
    with faults.db_proxy.away():
        time.sleep(4)  # the job has ended; its outcome cannot be written
        assert faults.client.get(job.id).state == "RUNNING"
        # So the message is still held, not acked. RabbitMQ refreshes its queue counters every
        # 5 s (collect_statistics_interval): only a reading taken a full interval after the
        # job's end shows what the worker did with the message then.
        settled = ended + 5.5
        while not (time.monotonic() > settled and faults.unacked() == 1):
            assert time.monotonic() < settled + 10, "the message was not held meanwhile"
            time.sleep(0.5)
    done = faults.client.wait(job.id, timeout=90)
    assert done.state == "SUCCEEDED" and done.attempts == 1
    assert _endings(faults, job.id) == ["succeeded"]
    assert "database unavailable, retrying" in faults.pool.logs()
    deadline = time.monotonic() + 15
    while faults.unacked():  # acked once the outcome landed
        assert time.monotonic() < deadline, "the message was never acked"
        time.sleep(0.5)


def test_after_the_broker_goes_away_workers_and_producers_carry_on(faults: FaultEnv) -> None:
    workers = faults.pool.ensure(2)
    running = _submit(faults, "fault:wait=3")
    faults.wait_state(running.id, "RUNNING")
    submitted: list[JobView] = []
    with faults.mq_proxy.away():
        producer = threading.Thread(
            target=lambda: submitted.extend(_submit(faults, f"during {i}") for i in range(3))
        )
        producer.start()
        time.sleep(5)
        assert submitted == []  # publishing waits for the broker
    producer.join(90)
    assert len(submitted) == 3
    for job in [running, *submitted]:
        done = faults.client.wait(job.id, timeout=120)
        assert done.state == "SUCCEEDED", done.error
    # Its message came back when the connection dropped; the copy waited instead of rerunning.
    assert faults.client.get(running.id).attempts == 1
    assert _endings(faults, running.id) == ["succeeded"]
    assert all(worker.alive for worker in workers)


def test_a_stuck_job_fails_at_its_time_limit_and_the_worker_goes_on(faults: FaultEnv) -> None:
    faults.pool.ensure(1)
    began = time.monotonic()
    stuck = _submit(faults, "fault:sleep=8")
    done = faults.client.wait(stuck.id, timeout=30)
    assert done.state == "FAILED" and done.error is not None and done.error.type == "timeout"
    assert "time limit of 4 s" in done.error.message
    assert time.monotonic() - began < 7.5  # failed at the limit, before the thread woke up
    other = _submit(faults, "next in line")
    assert faults.client.wait(other.id, timeout=30).state == "SUCCEEDED"
    time.sleep(max(0.0, 9 - (time.monotonic() - began)))
    again = faults.client.get(stuck.id)
    assert again.state == "FAILED" and again.result is None  # the late result was discarded
    assert _endings(faults, stuck.id) == ["timeout"]


def test_a_running_job_is_cancelled_at_its_next_check(faults: FaultEnv) -> None:
    faults.pool.ensure(1)
    job = _submit(faults, "fault:wait=60")
    faults.wait_state(job.id, "RUNNING")
    assert faults.client.cancel(job.id).state == "RUNNING"
    done = faults.client.wait(job.id, timeout=20)
    assert done.state == "CANCELLED" and done.result is None
    assert _endings(faults, job.id) == ["cancelled"]


def test_one_job_delivered_twice_at_once_runs_once(faults: FaultEnv) -> None:
    faults.pool.ensure(2)
    job_id = str(uuid.uuid4())
    job = {"id": job_id, "task": TASK, "model": MODEL, "inputs": ["fault:wait=2", "twice?"]}
    connection = pika.BlockingConnection(pika.URLParameters(faults.client.settings.broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(2):
            channel.basic_publish(
                exchange="pipeq",
                routing_key="nlp",
                body=celery_body(job),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    headers={"task": "pipeq.run_job", "id": job_id},
                ),
            )
    finally:
        connection.close()
    time.sleep(0.5)
    done = faults.client.wait(job_id, timeout=60)
    assert done.state == "SUCCEEDED" and done.attempts == 1
    deadline = time.monotonic() + 30
    copies = rf"job {job_id}: (running under another live attempt|finished \(SUCCEEDED\))"
    while not re.search(copies, faults.pool.logs()):
        assert time.monotonic() < deadline, "the second copy was never seen"
        time.sleep(0.2)
    assert _endings(faults, job_id) == ["succeeded"]


def test_the_database_password_never_reaches_a_log(faults: FaultEnv) -> None:
    faults.pool.ensure(1)
    logs = faults.pool.logs()
    assert "worker" in logs and "ready." in logs
    assert SECRET not in logs


def test_a_batch_out_of_memory_is_split_and_succeeds(faults: FaultEnv) -> None:
    faults.pool.ensure(1)
    texts = ["one", "two", "fault:oom>1", "four", "five"]
    done = faults.client.wait(_submit(faults, texts).id, timeout=60)
    assert done.state == "SUCCEEDED" and len(done.result) == 5
    assert done.result[2] == {"fault": "fault:oom>1"}
    assert all("label" in r for i, r in enumerate(done.result) if i != 2)
    assert "out of memory on a batch of 5; retrying as 2 + 3" in faults.pool.logs()


def test_a_message_returned_past_the_limit_is_dead_lettered_and_redriven(
    faults: FaultEnv, tmp_path: Path
) -> None:
    faults.pool.stop()  # one worker that gives up on the database after a second
    impatient = WorkerProcess(
        queues=["nlp"],
        env={**faults.env, "PIPEQ_DB_RETRY_SECONDS": "1"},
        log=tmp_path / "impatient.log",
        extra=["--name", "impatient@pipeq-tests"],
        command=WORKER_COMMAND,
    ).start(timeout=180)
    try:
        with faults.db_proxy.away():
            job = _submit(faults, "handed back until it is dead-lettered")
            impatient.wait_for(rf"dead letter {job.id}: database away, handed back", timeout=60)
        done = faults.client.wait(job.id, timeout=120)
        log = impatient.log()
        assert done.state == "SUCCEEDED" and done.attempts == 1, done.error
        assert f"dead letter {job.id} (job {job.id}, delivery_limit from nlp): redrive" in log
    finally:
        impatient.stop()
