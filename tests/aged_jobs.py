"""Job rows that reached a state some time ago: what housekeeping (unit and integration) sorts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.models import Job, utcnow
from shared.jobs import parse_job
from shared.states import State


def aged_job(
    session: Session,
    state: State,
    *,
    age: timedelta,
    now: datetime | None = None,
    result: Any = None,
    progress: dict[str, Any] | None = None,
) -> str:
    """A job row that reached ``state`` ``age`` before ``now`` (its message long gone)."""
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"}).with_id()
    job_id = request.id or ""
    repo.insert_job(session, request, inline_limit=1024)
    if state is not State.QUEUED:
        states.start(session, job_id, worker="gone@host")
        states.heartbeat(session, job_id, progress=progress)
    if state is State.SUCCEEDED:
        states.succeed(session, job_id, result)
    elif state is State.FAILED:
        states.fail(session, job_id, error_type="model_failure", message="boom")
    elif state is State.CANCELLED:
        states.finish_cancelled(session, job_id)
    when = (now or utcnow()) - age
    finished = when if state.terminal else None
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(created_at=when, updated_at=when, heartbeat_at=when, finished_at=finished)
    )
    return job_id
