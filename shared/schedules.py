"""Recurring jobs as users make and see them: the operations behind ``pipeq schedule``.

A schedule is a job template (task, model, inputs, params, priority) and a
:class:`~shared.cadence.Cadence`. It is stored in the ``schedules`` table, so
every change (add, pause, resume, remove) takes effect at beat's next tick,
without a restart. Each run becomes an ordinary job whose ``schedule_id``
names the schedule and whose idempotency key (:func:`run_key`) names the run:
a run is submitted once, even if beat stops between submitting and recording it.

Functions take the caller's session and never commit; users see schedules as
:class:`ScheduleView`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.cadence import Cadence
from shared.db import schedules as repo
from shared.db.models import Schedule
from shared.errors import InvalidSchedule, ScheduleNotFound
from shared.jobs import ALIAS_PATTERN, JobRequest, parse_job

_NAME = re.compile(ALIAS_PATTERN)


class ScheduleView(BaseModel):
    """A schedule as users see it (``pipeq schedule list --json``)."""

    id: str
    name: str
    cadence: str
    cron: str | None
    every_seconds: int | None
    task: str
    model: str
    params: dict[str, Any]
    priority: int
    paused: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: str | None
    last_error: str | None
    runs: int
    created_at: datetime


def cadence_of(row: Schedule) -> Cadence:
    every = timedelta(seconds=row.every_seconds) if row.every_seconds is not None else None
    return Cadence(cron=row.cron, every=every)


def to_view(row: Schedule) -> ScheduleView:
    return ScheduleView(
        id=row.id,
        name=row.name,
        cadence=str(cadence_of(row)),
        cron=row.cron,
        every_seconds=row.every_seconds,
        task=row.task,
        model=row.model,
        params=row.params,
        priority=row.priority,
        paused=row.paused,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_job_id=row.last_job_id,
        last_error=row.last_error,
        runs=row.runs,
        created_at=row.created_at,
    )


def run_key(schedule_id: str, slot: datetime) -> str:
    """The idempotency key of the run of ``schedule_id`` due at ``slot``."""
    return f"schedule:{schedule_id}:{slot.isoformat()}"


def run_request(row: Schedule, *, slot: datetime) -> JobRequest:
    """The job for the run due at ``slot``, checked as any producer's would be."""
    return parse_job(
        {
            "task": row.task,
            "model": row.model,
            "inputs": row.inputs,
            "params": row.params,
            "priority": row.priority,
            "idempotency_key": run_key(row.id, slot),
        }
    )


def add(
    session: Session, *, name: str, cadence: Cadence, job: JobRequest, now: datetime
) -> ScheduleView:
    """Store a new schedule; its first run is :meth:`Cadence.first` after ``now``."""
    if not _NAME.match(name):
        raise InvalidSchedule(
            f"schedule name {name!r}: use letters, digits, '.', '_' or '-' (128 at most)"
        )
    if job.id is not None or job.idempotency_key is not None:
        raise InvalidSchedule(
            "a schedule's job takes no id or idempotency key: each run has its own"
        )
    if repo.get_by_name(session, name) is not None:
        raise InvalidSchedule(f"a schedule named {name!r} exists; remove it first")
    every = cadence.every.total_seconds() if cadence.every is not None else None
    if every is not None and every != int(every):
        raise InvalidSchedule("an interval must be a whole number of seconds")
    try:
        with session.begin_nested():
            row = repo.insert_schedule(
                session,
                id=str(uuid.uuid4()),
                name=name,
                cron=cadence.cron,
                every_seconds=int(every) if every is not None else None,
                task=job.task,
                model=job.model,
                inputs=job.inputs,
                params=job.params,
                priority=job.priority,
                next_run_at=cadence.first(now),
            )
    except IntegrityError:
        raise InvalidSchedule(f"a schedule named {name!r} exists; remove it first") from None
    return to_view(row)


def find(session: Session, name: str) -> Schedule:
    row = repo.get_by_name(session, name)
    if row is None:
        raise ScheduleNotFound(f"no schedule {name!r}")
    return row


def pause(session: Session, name: str) -> ScheduleView:
    """Stop a schedule's runs until it is resumed."""
    row = find(session, name)
    repo.set_paused(session, row.id, paused=True)
    session.refresh(row)
    return to_view(row)


def resume(session: Session, name: str, *, now: datetime) -> ScheduleView:
    """Run a paused schedule again from its next run after ``now``; missed runs are skipped."""
    row = find(session, name)
    if row.paused:
        repo.set_paused(session, row.id, paused=False, next_run_at=cadence_of(row).first(now))
        session.refresh(row)
    return to_view(row)


def remove(session: Session, name: str) -> None:
    """Delete a schedule; the jobs it made stay, unlinked."""
    repo.delete_schedule(session, find(session, name).id)


def list_all(session: Session) -> list[ScheduleView]:
    return [to_view(row) for row in repo.list_schedules(session)]
