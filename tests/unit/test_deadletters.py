"""Dead letters read without trust, and settled against their rows: nothing vanishes."""

from __future__ import annotations

import pickle
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.models import utcnow
from shared.deadletters import REDRIVE_HEADER, DeadLetter, Verdict, redrive_headers, settle
from shared.jobs import parse_job
from shared.messages import celery_body, read_body


def _headers(reason: str = "delivery_limit", **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task": "pipeq.run_job",
        "x-death": [{"count": 1, "reason": reason, "queue": "nlp", "routing-keys": ["nlp"]}],
        "x-first-death-reason": reason,
        "x-first-death-queue": "nlp",
        **extra,
    }


def _job(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task": "text-classification",
        "model": "m",
        "inputs": "x",
        **overrides,
    }


def _letter(job: Any, *, body: bytes | None = None, **headers: Any) -> DeadLetter:
    content_type = headers.pop("content_type", "application/json")
    raw = body if body is not None else celery_body(job)
    return DeadLetter.read(_headers(**headers), raw, content_type)


def _settle(session: Session, letter: DeadLetter) -> tuple[Verdict, str | None]:
    return settle(session, letter, inline_limit=1024, lease_seconds=30)


def _state(session: Session, job_id: str) -> tuple[str, str | None, str | None]:
    job = repo.get_job(session, job_id)
    assert job is not None
    session.refresh(job)
    return job.state, job.error_type, job.error_message


def test_a_pickled_body_is_never_unpickled() -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (exec, ("raise SystemExit('unpickled!')",))

    body = pickle.dumps([[Boom()], {}, {}])
    job, problem = read_body(body, "application/x-python-serialize")
    assert job is None and problem is not None and "not JSON" in problem
    letter = DeadLetter.read(_headers("rejected"), body, "application/x-python-serialize")
    assert letter.job is None and letter.reason == "rejected" and letter.queue == "nlp"


def test_a_job_returned_without_running_is_redriven(session: Session) -> None:
    job = _job()
    letter = _letter(job)
    assert letter.job_id == job["id"] and letter.home_queue == "nlp"
    assert _settle(session, letter) == (Verdict.REDRIVE, job["id"])
    headers = redrive_headers(_headers())
    assert headers[REDRIVE_HEADER] == 1 and not any(k.startswith("x-death") for k in headers)
    assert "x-first-death-reason" not in headers and headers["task"] == "pipeq.run_job"


def test_out_of_redrives_the_row_is_created_and_failed_with_the_reason(session: Session) -> None:
    job = _job()
    verdict, job_id = _settle(session, _letter(job, **{REDRIVE_HEADER: 2}))
    assert verdict is Verdict.FAILED and job_id == job["id"]
    state, error_type, message = _state(session, job["id"])
    assert (state, error_type) == ("FAILED", "dead_lettered")
    assert message is not None and "nlp (delivery_limit)" in message and "2 redrives" in message


def test_a_job_started_at_the_limit_is_poison(session: Session) -> None:
    job = _job()
    repo.insert_job(session, parse_job(job), inline_limit=1024)
    for n in range(3):
        states.start(session, job["id"], worker=f"w{n}", now=utcnow() - timedelta(minutes=5))
    assert _settle(session, _letter(job))[0] is Verdict.FAILED
    state, error_type, message = _state(session, job["id"])
    assert (state, error_type) == ("FAILED", "poison")
    assert message is not None and "started 3 times" in message


def test_a_job_running_under_a_live_lease_is_not_failed(session: Session) -> None:
    job = _job()
    repo.insert_job(session, parse_job(job), inline_limit=1024)
    for n in range(3):
        states.start(session, job["id"], worker=f"w{n}")
    assert _settle(session, _letter(job))[0] is Verdict.REDRIVE
    assert _settle(session, _letter(job, **{REDRIVE_HEADER: 5}))[0] is Verdict.LEFT
    assert _state(session, job["id"])[0] == "RUNNING"


def test_a_finished_job_is_left_as_it_is(session: Session) -> None:
    job = _job()
    repo.insert_job(session, parse_job(job), inline_limit=1024)
    states.start(session, job["id"], worker="w")
    states.fail(session, job["id"], error_type="poison", message="killed its worker")
    assert _settle(session, _letter(job, reason="rejected"))[0] is Verdict.DONE
    assert _state(session, job["id"])[1:] == ("poison", "killed its worker")


def test_an_unreadable_body_fails_the_job_named_in_its_headers(session: Session) -> None:
    letter = _letter(None, body=b"\x80\x04not json", content_type="application/json")
    verdict, job_id = _settle(session, letter)
    assert verdict is Verdict.FAILED and job_id == letter.task_id
    state, error_type, message = _state(session, job_id or "")
    assert (state, error_type) == ("FAILED", "invalid_job")
    assert message is not None and "not valid JSON" in message


def test_a_letter_without_any_id_is_dropped(session: Session) -> None:
    headers = _headers()
    del headers["id"]
    letter = DeadLetter.read(headers, b"[]", "application/json")
    assert _settle(session, letter) == (Verdict.DROPPED, None)


def test_a_letter_from_an_unknown_queue_goes_home_by_its_task(session: Session) -> None:
    job = _job(task="image-classification")
    letter = DeadLetter.read({"id": job["id"]}, celery_body(job), "application/json")
    assert letter.queue == "" and letter.home_queue == "vision"
    stray = DeadLetter.read({"id": job["id"]}, celery_body(_job(task="dance")), "application/json")
    assert stray.home_queue is None
    assert _settle(session, stray)[0] is Verdict.FAILED


def test_a_body_nested_too_deep_to_decode_is_reported_not_raised() -> None:
    body = ('[[{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}], {}, {}]").encode()
    letter = DeadLetter.read(_headers("rejected"), body, "application/json")
    assert letter.job is None and letter.problem is not None and "RecursionError" in letter.problem
