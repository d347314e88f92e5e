"""Stale RUNNING jobs (their worker vanished) are found by heartbeat age and failed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.models import utcnow
from shared.jobs import parse_job
from shared.stale import requeue_stale_jobs, stale_jobs, sweep_stale_jobs


def _running(session: Session) -> str:
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"}).with_id()
    repo.insert_job(session, request, inline_limit=1024)
    states.start(session, request.id or "", worker="w")
    return request.id or ""


def test_only_silent_running_jobs_are_swept(session: Session) -> None:
    silent, alive, done = _running(session), _running(session), _running(session)
    states.succeed(session, done, "ok")
    later = utcnow() + timedelta(minutes=10)
    states.heartbeat(session, alive, at=later)
    timeout = timedelta(minutes=5)
    assert list(stale_jobs(session, heartbeat_timeout=timeout, now=later)) == [silent]
    assert sweep_stale_jobs(session, heartbeat_timeout=timeout, now=later) == [silent]
    job = repo.get_job(session, silent)
    assert job is not None
    session.refresh(job)
    assert job.state == "FAILED" and job.error_type == "worker_lost"
    assert states.current(session, alive) is states.State.RUNNING
    assert states.current(session, done) is states.State.SUCCEEDED
    assert sweep_stale_jobs(session, heartbeat_timeout=timeout, now=later) == []


def test_requeue_republishes_jobs_the_row_keeps_and_fails_the_rest(session: Session) -> None:
    kept = _running(session)
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "y" * 50})
    big = request.with_id().id or ""
    repo.insert_job(session, request.model_copy(update={"id": big}), inline_limit=10)
    states.start(session, big, worker="w")
    published: list[dict[str, object]] = []
    later = utcnow() + timedelta(minutes=10)
    sweep = requeue_stale_jobs(
        session, heartbeat_timeout=timedelta(minutes=5), publish=published.append, now=later
    )
    assert sweep.requeued == [kept] and sweep.failed == [big]
    assert published == [
        {
            "id": kept,
            "task": "text-classification",
            "model": "m",
            "inputs": "x",
            "params": {},
            "priority": 0,
        }
    ]
    assert states.current(session, kept) is states.State.QUEUED
    assert states.current(session, big) is states.State.FAILED
    # The requeued job is claimed afresh by its next message.
    again = states.start(session, kept, worker="w2")
    assert again.outcome is states.Outcome.STARTED and again.attempt == 2


def test_a_publish_that_fails_changes_nothing(session: Session) -> None:
    job_id = _running(session)
    session.commit()

    def broker_away(message: dict[str, object]) -> None:
        raise ConnectionError("broker away")

    later = utcnow() + timedelta(minutes=10)
    try:
        requeue_stale_jobs(
            session, heartbeat_timeout=timedelta(minutes=5), publish=broker_away, now=later
        )
    except ConnectionError:
        session.rollback()
    else:
        raise AssertionError("the publish error was swallowed")
    assert states.current(session, job_id) is states.State.RUNNING
