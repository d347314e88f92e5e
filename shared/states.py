"""The job state machine: the only code that changes a job's state.

::

    QUEUED ──start──> RUNNING ──succeed──> SUCCEEDED
      │                 │ ├────fail─────> FAILED
      │                 │ └───cancel────> CANCELLED
      │                 └──requeue──> QUEUED   (its worker died; beat puts it back)
      ├────fail───────> FAILED      (dead-lettered, or never runnable)
      └────cancel─────> CANCELLED

    RUNNING ──start──> RUNNING   (a redelivered message after its worker died)

Terminal states (SUCCEEDED, FAILED, CANCELLED) are never left. Every change
is one conditional ``UPDATE ... WHERE state IN (...)``, so two processes racing
on one job cannot both win: the loser's update touches no row, and it learns
that it lost. That is what makes a redelivered message for a finished job a
no-op, and a job's result written once.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, utcnow


class State(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

#: For each target state, the states a job may reach it from.
SOURCES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING}),
    State.RUNNING: frozenset({State.QUEUED, State.RUNNING}),
    State.SUCCEEDED: frozenset({State.RUNNING}),
    State.FAILED: frozenset({State.QUEUED, State.RUNNING}),
    State.CANCELLED: frozenset({State.QUEUED, State.RUNNING}),
}


class Outcome(enum.Enum):
    """What :func:`start` found."""

    STARTED = "started"
    FINISHED = "finished"  # already terminal: ack the message, do nothing
    MISSING = "missing"


@dataclass(frozen=True)
class Started:
    outcome: Outcome
    attempt: int = 0
    state: State | None = None


def can_move(source: State, target: State) -> bool:
    return source in SOURCES[target]


def _move(
    session: Session, job_id: str, target: State, *, only_from: State | None = None, **values: Any
) -> bool:
    sources = {only_from} if only_from else SOURCES[target]
    if not sources <= SOURCES[target]:
        raise ValueError(f"{only_from} -> {target} is not a transition")
    now = utcnow()
    values.setdefault("updated_at", now)
    if target.terminal:
        values.setdefault("finished_at", now)
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.state.in_([s.value for s in sources]))
        .values(state=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1


def current(session: Session, job_id: str) -> State | None:
    state = session.scalar(select(Job.state).where(Job.id == job_id))
    return State(state) if state else None


def start(session: Session, job_id: str, *, worker: str) -> Started:
    """Claim a job for ``worker``: QUEUED or (redelivered) RUNNING becomes RUNNING."""
    now = utcnow()
    moved = _move(
        session,
        job_id,
        State.RUNNING,
        worker=worker,
        attempts=Job.attempts + 1,
        started_at=now,
        heartbeat_at=now,
    )
    if moved:
        attempt = session.scalar(select(Job.attempts).where(Job.id == job_id)) or 1
        return Started(Outcome.STARTED, attempt=attempt, state=State.RUNNING)
    state = current(session, job_id)
    if state is None:
        return Started(Outcome.MISSING)
    return Started(Outcome.FINISHED, state=state)


def succeed(session: Session, job_id: str, result: Any) -> bool:
    """RUNNING -> SUCCEEDED with ``result``; False if the job was no longer running."""
    return _move(
        session, job_id, State.SUCCEEDED, result=result, error_type=None, error_message=None
    )


def fail(session: Session, job_id: str, *, error_type: str, message: str) -> bool:
    """QUEUED or RUNNING -> FAILED with a reason a user can read."""
    return _move(session, job_id, State.FAILED, error_type=error_type, error_message=message)


def cancel(session: Session, job_id: str) -> State | None:
    """Cancel a job: a queued one at once, a running one at its next check.

    Returns the state after the call (``None`` if there is no such job).
    """
    if _move(
        session,
        job_id,
        State.CANCELLED,
        only_from=State.QUEUED,
        error_type="cancelled",
        error_message="cancelled by user",
    ):
        return State.CANCELLED
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == State.RUNNING.value)
        .values(cancel_requested=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return current(session, job_id)


def finish_cancelled(session: Session, job_id: str) -> bool:
    """RUNNING -> CANCELLED, once the worker has stopped the job."""
    return _move(
        session, job_id, State.CANCELLED, error_type="cancelled", error_message="cancelled by user"
    )


def requeue(session: Session, job_id: str, *, reason: str) -> bool:
    """RUNNING -> QUEUED, for a job whose worker vanished; the caller republishes it."""
    return _move(
        session, job_id, State.QUEUED, worker=None, heartbeat_at=None, error_message=reason
    )


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def heartbeat(
    session: Session,
    job_id: str,
    *,
    progress: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> bool:
    """Mark a running job alive (and record its progress); False once it is not running."""
    values: dict[str, Any] = {"heartbeat_at": at or utcnow(), "updated_at": at or utcnow()}
    if progress is not None:
        values["progress"] = progress
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.state == State.RUNNING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1
