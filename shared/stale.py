"""Jobs whose worker vanished: RUNNING, with a heartbeat older than a timeout.

A worker stamps ``heartbeat_at`` when it starts a job (and, while it runs, at
intervals). If the worker dies and RabbitMQ redelivers the message, the next
worker claims the job again and nothing here is needed. If the message is gone
(it was acked, or dead-lettered), the row would stay RUNNING for ever: beat calls
:func:`sweep_stale_jobs` periodically to fail such jobs with a clear reason.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared import states
from shared.db.models import Job, utcnow
from shared.states import State


def stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    now: datetime | None = None,
    limit: int = 1000,
) -> Sequence[str]:
    """Ids of RUNNING jobs not heard from within ``heartbeat_timeout``."""
    cutoff = (now or utcnow()) - heartbeat_timeout
    statement = (
        select(Job.id)
        .where(Job.state == State.RUNNING.value)
        .where(
            or_(Job.heartbeat_at < cutoff, Job.heartbeat_at.is_(None) & (Job.updated_at < cutoff))
        )
        .order_by(Job.updated_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def sweep_stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    now: datetime | None = None,
) -> list[str]:
    """Fail every stale RUNNING job (``worker_lost``); returns the ids it failed."""
    failed = []
    for job_id in stale_jobs(session, heartbeat_timeout=heartbeat_timeout, now=now):
        message = (
            f"worker lost: no heartbeat for over {heartbeat_timeout.total_seconds():.0f} s "
            "and the message was not redelivered"
        )
        if states.fail(session, job_id, error_type="worker_lost", message=message):
            failed.append(job_id)
    return failed
