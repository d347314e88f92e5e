"""The worker's job lifecycle, without Celery: a message in, a terminal row out."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from services.worker.registry import Models
from services.worker.runner import JobRunner, job_id_of
from shared import states
from shared.db import repo
from shared.db.engine import session_scope
from shared.jobs import parse_job
from shared.registry import load_registry
from shared.settings import Settings


@pytest.fixture(scope="module")
def models(tiny_registry: Path) -> Models:
    return Models(load_registry(tiny_registry), device="cpu", queues=("nlp",))


@pytest.fixture
def runner(models: Models, db_url: str, tmp_path: Path) -> JobRunner:
    settings = Settings(database_url=db_url, home=tmp_path, max_message_bytes=10_000)
    return JobRunner(models, worker="test-worker", settings=settings, db_retry_seconds=1)


def _row(runner: JobRunner, job_id: str) -> Any:
    with session_scope(runner.db_url) as session:
        job = repo.get_job(session, job_id)
        assert job is not None
        return repo.to_view(job)


def _message(**fields: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task": "text-classification",
        "model": "tiny-text-classification",
        "inputs": "I love it",
        **fields,
    }


def test_creates_the_row_when_the_producer_did_not(runner: JobRunner) -> None:
    message = _message()
    assert runner.run(message, fallback_id="x") == "SUCCEEDED"
    job = _row(runner, message["id"])
    assert job.state == "SUCCEEDED" and job.attempts == 1 and job.worker == "test-worker"
    assert job.result[0]["label"] in {"POSITIVE", "NEGATIVE"}


def test_a_redelivered_finished_job_is_not_run_again(runner: JobRunner) -> None:
    message = _message()
    runner.run(message, fallback_id="x")
    first = _row(runner, message["id"])
    assert runner.run(message, fallback_id="x") == "SUCCEEDED"
    again = _row(runner, message["id"])
    assert again.attempts == 1 and again.finished_at == first.finished_at


def test_the_celery_id_names_a_message_without_one(runner: JobRunner) -> None:
    message = _message()
    del message["id"]
    celery_id = str(uuid.uuid4())
    runner.run(message, fallback_id=celery_id)
    assert _row(runner, celery_id).state == "SUCCEEDED"


@pytest.mark.parametrize(
    ("message", "error_type", "fragment"),
    [
        ({"task": "text-classification"}, "invalid_job", "model: Field required"),
        ("just a string", "invalid_job", "JSON object"),
        ({"task": "sing", "model": "m", "inputs": 1}, "unsupported_task", "unknown task"),
        (_message(model="nope"), "unknown_model", "unknown model 'nope'"),
        (_message(inputs=""), "invalid_input", "empty"),
        (_message(params={"top_k": 0}), "invalid_parameter", "top_k"),
        (_message(inputs="x" * 20_000), "invalid_input", "the limit is 10000"),
        (_message(trust_remote_code=True), "invalid_job", "trust_remote_code"),
    ],
)
def test_bad_messages_fail_their_own_job(
    runner: JobRunner, message: Any, error_type: str, fragment: str
) -> None:
    celery_id = str(uuid.uuid4())
    assert runner.run(message, fallback_id=celery_id) == "FAILED"
    job = _row(runner, job_id_of(message, celery_id))
    assert job.state == "FAILED" and job.error.type == error_type
    assert fragment in job.error.message
    good = _message()
    assert runner.run(good, fallback_id="y") == "SUCCEEDED"


def test_cancel_while_running_ends_cancelled(runner: JobRunner) -> None:
    message = _message()
    with session_scope(runner.db_url) as session:
        repo.insert_job(session, parse_job(message), inline_limit=1024)
        states.start(session, message["id"], worker="w")
        states.cancel(session, message["id"])
    runner.finish_succeeded(message["id"], ["ignored"])
    job = _row(runner, message["id"])
    assert job.state == "CANCELLED" and job.result is None


def test_non_uuid_ids_become_stable_uuids() -> None:
    assert job_id_of({}, "task-42") == job_id_of({"id": "bad"}, "task-42")
    uuid.UUID(job_id_of({}, "task-42"))
