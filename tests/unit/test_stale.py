"""Stale RUNNING jobs (their worker vanished) are found by heartbeat age and failed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.models import utcnow
from shared.jobs import parse_job
from shared.stale import stale_jobs, sweep_stale_jobs


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
