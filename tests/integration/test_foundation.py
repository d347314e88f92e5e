"""A job's whole path on real services: producer -> RabbitMQ -> worker process -> PostgreSQL."""

from __future__ import annotations

import json
import pickle
import re
import time
import uuid
from typing import Any

import pika
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from transformers import pipeline

from shared.client import Client
from shared.db.engine import get_engine
from shared.db.models import Base
from shared.errors import JobNotFound
from shared.jobs import JobView
from shared.settings import Settings
from tests.helpers import WorkerProcess


def _wait_for_row(client: Client, job_id: str, timeout: float = 60) -> JobView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return client.wait(job_id, timeout=max(deadline - time.monotonic(), 0.1))
        except JobNotFound:  # a producer without DB: the worker creates the row
            time.sleep(0.1)
    raise TimeoutError(job_id)


def _publish_raw(
    settings: Settings,
    body: bytes,
    *,
    content_type: str = "application/json",
    task: str = "pipeq.run_job",
    queue: str = "nlp",
) -> str:
    """Publish as a foreign producer would: pika, no pipeq code."""
    task_id = str(uuid.uuid4())
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="pipeq",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                content_type=content_type,
                content_encoding="utf-8",
                delivery_mode=2,
                headers={"task": task, "id": task_id},
            ),
        )
    finally:
        connection.close()
    return task_id


def _celery_body(job: Any) -> bytes:
    return json.dumps(
        [[job], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    ).encode()


def test_a_job_succeeds_with_the_pipelines_answer(
    worker: WorkerProcess, client: Client, settings: Settings
) -> None:
    texts = ["I love this movie", "the food was awful"]
    job = client.submit("text-classification", "tiny-text-classification", texts, {"top_k": 2})
    assert job.state in {"QUEUED", "RUNNING", "SUCCEEDED"}
    done = client.wait(job.id, timeout=60)
    assert done.state == "SUCCEEDED", done.error
    spec_dir = settings.registry_path.parent / "tiny-text-classification"
    expected = pipeline("text-classification", model=str(spec_dir))(
        texts, top_k=2, truncation=True, padding=False, batch_size=2
    )
    for got, want in zip(done.result, expected, strict=True):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    assert done.attempts == 1 and done.worker and done.started_at and done.finished_at


def test_the_worker_logs_load_time_and_memory(worker: WorkerProcess) -> None:
    match = re.search(
        r"loaded model tiny-text-classification \(text-classification\) on cpu "
        r"in ([\d.]+) s: tensors ([\d.]+) MiB",
        worker.log(),
    )
    assert match, worker.log()[-2000:]
    assert float(match.group(1)) > 0 and float(match.group(2)) > 0


def test_a_foreign_producer_needs_only_the_broker(
    worker: WorkerProcess, client: Client, settings: Settings
) -> None:
    job_id = str(uuid.uuid4())
    job = {
        "id": job_id,
        "task": "text-classification",
        "model": "tiny-text-classification",
        "inputs": "hello from another service",
    }
    _publish_raw(settings, _celery_body(job))
    done = _wait_for_row(client, job_id)
    assert done.state == "SUCCEEDED" and done.result[0]["label"] in {"POSITIVE", "NEGATIVE"}


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"{this is not json", "application/json", "could not be decoded as JSON"),
        (
            pickle.dumps([[{"task": "text-classification"}], {}, {}]),
            "application/x-python-serialize",
            "pipeq accepts JSON only",
        ),
    ],
)
def test_undecodable_messages_fail_and_are_dead_lettered(
    worker: WorkerProcess,
    client: Client,
    settings: Settings,
    body: bytes,
    content_type: str,
    fragment: str,
) -> None:
    task_id = _publish_raw(settings, body, content_type=content_type)
    done = _wait_for_row(client, task_id)
    assert done.state == "FAILED" and fragment in done.error.message
    # It reached pipeq-dead, where the worker's dead-letter consumer found its row final.
    worker.wait_for(rf"dead letter {task_id} \(job {task_id}, rejected from nlp\): done")
    assert worker.alive


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        ({"task": "text-classification", "inputs": "x"}, "model: Field required"),
        ({"task": "text-classification", "model": "ghost", "inputs": "x"}, "unknown model"),
        ({"task": "dance", "model": "tiny-text-classification", "inputs": "x"}, "unknown task"),
        (
            {
                "task": "text-classification",
                "model": "tiny-text-classification",
                "inputs": "x",
                "params": {"top_k": "three"},
            },
            "top_k",
        ),
        ("a bare string", "JSON object"),
    ],
)
def test_malformed_jobs_fail_their_own_row_and_the_worker_goes_on(
    worker: WorkerProcess,
    client: Client,
    settings: Settings,
    job: Any,
    fragment: str,
) -> None:
    task_id = _publish_raw(settings, _celery_body(job))
    done = _wait_for_row(client, task_id)
    assert done.state == "FAILED" and fragment in done.error.message
    after = client.submit("text-classification", "tiny-text-classification", "still here?")
    assert client.wait(after.id, timeout=60).state == "SUCCEEDED"


def test_a_redelivered_finished_job_does_not_run_again(
    worker: WorkerProcess, client: Client, settings: Settings
) -> None:
    job_id = str(uuid.uuid4())
    job = {
        "id": job_id,
        "task": "text-classification",
        "model": "tiny-text-classification",
        "inputs": "once only",
    }
    _publish_raw(settings, _celery_body(job))
    first = _wait_for_row(client, job_id)
    _publish_raw(settings, _celery_body(job))
    worker.wait_for(rf"job {job_id}: finished \(SUCCEEDED\), not run again", timeout=30)
    again = client.get(job_id)
    assert again.attempts == 1 and again.finished_at == first.finished_at
    assert again.result == first.result


def test_sigterm_finishes_or_requeues_jobs_in_hand(
    worker: WorkerProcess, client: Client, pipeq_env: dict[str, str], tmp_path: Any
) -> None:
    second = WorkerProcess(
        queues=["nlp"],
        env=pipeq_env,
        log=tmp_path / "second.log",
        extra=["--concurrency", "2", "--prefetch-multiplier", "8"],
    ).start()
    ids = [
        client.submit("text-classification", "tiny-text-classification", f"text {i}").id
        for i in range(150)
    ]
    second.wait_for(r"services.worker.runner: job ", timeout=30)  # it has jobs in hand
    assert second.stop() == 0
    jobs = [client.wait(job_id, timeout=120) for job_id in ids]
    assert [job.state for job in jobs] == ["SUCCEEDED"] * len(ids)
    # The stopped worker finished what it had started; the rest went back and ran elsewhere.
    assert any((job.worker or "").startswith("nlp-cpu@") for job in jobs)
    assert max(job.attempts for job in jobs) <= 2


def test_postgres_schema_matches_the_models(settings: Settings, pipeq_env: dict[str, str]) -> None:
    with get_engine(settings.database_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
