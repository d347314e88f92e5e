"""The bad-input corpus, tried for real against the session's shared worker.

Every case is published as a foreign producer would (pika, no pipeq code) and
must end as a clear FAILED row, with the worker alive and the next job served;
where the Python client can see the problem, it must refuse at submit instead.
The cases are in ``tests/integration/corpus.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pika
import pytest
from sqlalchemy import inspect

from shared.client import Client
from shared.db.engine import get_engine
from shared.errors import JobNotFound, PipeqError
from shared.jobs import JobView, parse_job
from shared.messages import check_json
from shared.queues import ROUTES
from shared.settings import Settings
from tests.helpers import WorkerProcess
from tests.integration.corpus import MARKER, TEXT_MODEL, Case, corpus

CASES = corpus()


def _publish(settings: Settings, case: Case) -> str:
    task_id = str(uuid.uuid4())
    if case.body is not None:
        body = case.body
    else:
        job = dict(case.job) if isinstance(case.job, dict) else case.job
        if isinstance(job, dict):
            job.setdefault("id", task_id)
        body = json.dumps([[job], {}, {}]).encode("utf-8", "surrogatepass")
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="pipeq",
            routing_key="nlp" if not isinstance(case.job, dict) else _queue(case.job),
            body=body,
            properties=pika.BasicProperties(
                content_type=case.content_type,
                delivery_mode=2,
                headers={**case.headers, "id": task_id} if case.headers else None,
            ),
        )
    finally:
        connection.close()
    return task_id


def _queue(job: dict[str, Any]) -> str:
    return ROUTES.get(job.get("task"), "nlp") if isinstance(job.get("task"), str) else "nlp"


def _wait_row(client: Client, job_id: str, timeout: float = 90) -> JobView:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.wait(job_id, timeout=max(deadline - time.monotonic(), 0.1))
        except JobNotFound:
            assert time.monotonic() < deadline, f"no row for {job_id}"
            time.sleep(0.1)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_foreign_producers_bad_message_fails_its_own_job(
    worker: WorkerProcess, client: Client, settings: Settings, case: Case
) -> None:
    task_id = _publish(settings, case)
    done = _wait_row(client, task_id)
    assert done.state == "FAILED", (case.name, done)
    assert done.error is not None and case.fragment in done.error.message, done.error
    if case.job is not None and case.body is None and case.fragment:
        assert done.error.type in (*case.error_types, "invalid_job"), done.error
    assert done.result is None and "root:" not in done.error.message
    assert worker.alive
    after = client.submit("text-classification", TEXT_MODEL, f"still serving after {case.name}")
    assert client.wait(after.id, timeout=60).state == "SUCCEEDED"


SUBMITTABLE = [case for case in CASES if case.refused_at_submit is not None]


@pytest.mark.parametrize("case", SUBMITTABLE, ids=[case.name for case in SUBMITTABLE])
def test_the_client_refuses_at_submit_or_the_job_fails(
    worker: WorkerProcess, client: Client, case: Case
) -> None:
    job = case.job
    try:
        if not isinstance(job, dict) or set(job) - {
            "task",
            "model",
            "inputs",
            "params",
            "priority",
        }:
            check_json(job)
            submitted = client.submit_request(parse_job(job))
        else:
            submitted = client.submit(
                job.get("task"),  # type: ignore[arg-type]
                job.get("model"),  # type: ignore[arg-type]
                job.get("inputs"),
                job.get("params"),  # type: ignore[arg-type]
                priority=job.get("priority", 0),
            )
    except PipeqError as exc:
        assert (case.submit_fragment or case.fragment) in str(exc), exc
        return
    except (TypeError, ValueError) as exc:  # a Python caller passing the wrong types
        assert not isinstance(exc, PipeqError)
        return
    done = client.wait(submitted.id, timeout=90)
    assert done.state == "FAILED" and done.error is not None
    assert case.fragment in done.error.message, done.error


def test_a_pickled_body_was_never_unpickled(worker: WorkerProcess) -> None:
    assert any(case.name == "a pickled body" for case in CASES)
    assert not MARKER.exists()


def test_texts_of_every_size_and_script_are_served(
    worker: WorkerProcess, client: Client, settings: Settings
) -> None:
    texts = {
        "1 MB": "la " * (2**20 // 3),
        "odd unicode": "\u202eevil\u200b\u200d👩‍👩‍👧 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̯̓ \U0001d54f \ufeff ﷽",
        "SQL": "'; DROP TABLE jobs; -- \" OR 1=1 /*",
        "markup": "<script>alert(1)</script> {{7*7}} ${jndi:ldap://x}",
    }
    jobs = {
        name: client.submit("text-classification", TEXT_MODEL, text) for name, text in texts.items()
    }
    for name, job in jobs.items():
        done = client.wait(job.id, timeout=120)
        assert done.state == "SUCCEEDED", (name, done.error)
    key = "1' OR '1'='1"
    first = client.submit("text-classification", TEXT_MODEL, "same", idempotency_key=key)
    again = client.submit("text-classification", TEXT_MODEL, "same", idempotency_key=key)
    assert again.id == first.id
    assert "jobs" in inspect(get_engine(settings.database_url)).get_table_names()
    assert worker.alive


def test_dead_letters_are_still_settled_after_the_corpus(
    worker: WorkerProcess, client: Client, settings: Settings
) -> None:
    case = Case("one more", body=b"\xff not json", refused_at_submit=None)
    task_id = _publish(settings, case)
    assert _wait_row(client, task_id).state == "FAILED"
    worker.wait_for(rf"dead letter {task_id} \(job {task_id}, rejected from nlp\): done")
    assert "Exception in thread" not in worker.log()
