"""Queries over the schedules table, for the CLI (add, list, pause...) and for beat.

Beat claims a run by moving ``next_run_at`` forward with a conditional update
(:func:`record_run`): of two processes acting on one due run, only one moves
it, so a run is recorded once even if two beats were ever to race. Every
function takes the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, Schedule, utcnow


def insert_schedule(session: Session, **values: Any) -> Schedule:
    """Add a schedule row; ``values`` are its columns (id, name, cadence, job fields...)."""
    now = utcnow()
    values.setdefault("created_at", now)
    values.setdefault("updated_at", now)
    schedule = Schedule(paused=False, runs=0, **values)
    session.add(schedule)
    session.flush()
    return schedule


def get_by_name(session: Session, name: str) -> Schedule | None:
    return session.scalar(select(Schedule).where(Schedule.name == name))


def list_schedules(session: Session) -> Sequence[Schedule]:
    return session.scalars(select(Schedule).order_by(Schedule.name)).all()


def set_paused(
    session: Session, schedule_id: str, *, paused: bool, next_run_at: datetime | None = None
) -> None:
    """Pause a schedule, or resume it from ``next_run_at``."""
    values: dict[str, Any] = {"paused": paused, "updated_at": utcnow()}
    if next_run_at is not None:
        values["next_run_at"] = next_run_at
    session.execute(update(Schedule).where(Schedule.id == schedule_id).values(**values))


def delete_schedule(session: Session, schedule_id: str) -> bool:
    """Remove a schedule; its jobs stay, their ``schedule_id`` set to NULL."""
    session.execute(
        update(Job).where(Job.schedule_id == schedule_id).values(schedule_id=None),
        execution_options={"synchronize_session": False},
    )
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(Schedule).where(Schedule.id == schedule_id)
    )
    return result.rowcount == 1


def due(session: Session, *, now: datetime, limit: int = 100) -> Sequence[Schedule]:
    """Active schedules whose next run is at or before ``now``, the most overdue first."""
    statement = (
        select(Schedule)
        .where(Schedule.paused.is_(False), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def next_due_at(session: Session) -> datetime | None:
    """When the soonest active schedule runs next (None without any)."""
    return session.scalar(select(func.min(Schedule.next_run_at)).where(Schedule.paused.is_(False)))


def record_run(
    session: Session,
    schedule_id: str,
    *,
    slot: datetime,
    next_run_at: datetime,
    job_id: str | None,
    error: str | None,
) -> bool:
    """Claim the run due at ``slot``: link its job and move ``next_run_at`` on.

    The schedule row is locked first, so that a concurrent remove waits for us
    (the link then points at a row that exists). Returns False when the run was
    no longer due at ``slot`` (paused and resumed meanwhile, or recorded by
    someone else) or the schedule is gone; the job, if any, still stands.
    """
    locked = select(Schedule.id).where(Schedule.id == schedule_id).with_for_update()
    if session.scalar(locked) is None:
        return False
    if job_id is not None:
        session.execute(
            update(Job).where(Job.id == job_id).values(schedule_id=schedule_id),
            execution_options={"synchronize_session": False},
        )
    values: dict[str, Any] = {
        "next_run_at": next_run_at,
        "last_run_at": slot,
        "last_error": error,
        "runs": Schedule.runs + 1,
        "updated_at": utcnow(),
    }
    if job_id is not None:
        values["last_job_id"] = job_id
    statement = (
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_run_at == slot)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1


def jobs_of(session: Session, schedule_id: str, *, limit: int = 20) -> Sequence[Job]:
    """The schedule's jobs, newest first."""
    statement = (
        select(Job)
        .where(Job.schedule_id == schedule_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return session.scalars(statement).all()
