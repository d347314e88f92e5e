"""The job state machine: the only code that changes a job's state.

::

    QUEUED ──start──> RUNNING ──succeed──> SUCCEEDED
      │                 │ ├────fail─────> FAILED
      │                 │ └───cancel────> CANCELLED
      │                 └──requeue──> QUEUED   (its worker died; the sweep puts it back)
      ├────fail───────> FAILED      (dead-lettered, or never runnable)
      └────cancel─────> CANCELLED

    RUNNING ──start──> RUNNING   (a redelivered message after its worker died)

Terminal states (SUCCEEDED, FAILED, CANCELLED) are never left. Every change
is one conditional ``UPDATE ... WHERE state IN (...)``, so two processes racing
on one job cannot both win: the loser's update touches no row, and it learns
that it lost. That is what makes a redelivered message for a finished job a
no-op, and a job's result written once.

Leases: :func:`start` gives the claiming attempt a fresh ``lease``. A worker
passes it to :func:`heartbeat` and to the terminal writes, which then touch the
row only while that attempt still holds it. With ``stale_after``, a RUNNING job
is taken over only once its heartbeat is older than that; a second delivery of
a job that a live worker is running learns :attr:`Outcome.BUSY` instead, so two
live workers never run one job side by side.

A job's end is announced to waiting clients by a trigger (``shared/db/ended.py``).

The package's modules: this one holds the states, the transitions and the writes
for one job; :mod:`shared.states.many` claims and succeeds a group of jobs in one
``UPDATE`` each (any database); :mod:`shared.states.postgres` writes a worker's
claims, successes and heartbeats in one statement each, the attempt log included,
on PostgreSQL. Import them all from :mod:`shared.states`.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, utcnow

#: The jobs table: statements here are Core (no ORM unit of work, much less per call).
JOBS: Final = cast(Table, Job.__table__)


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
    BUSY = "busy"  # RUNNING under a live attempt's lease: wait, do not run it twice
    MISSING = "missing"
    CONFLICT = "conflict"  # the message does not match its job's row: nothing done


@dataclass(frozen=True)
class Started:
    outcome: Outcome
    attempt: int = 0
    state: State | None = None
    lease: str | None = None
    #: The job's creation and this claim (STARTED only): its queue wait, for metrics.
    created_at: datetime | None = None
    started_at: datetime | None = None


@dataclass(frozen=True)
class Holding:
    """What a worker reads back about a job it holds (see :func:`holdings`)."""

    state: State
    lease: str | None
    cancel_requested: bool


def can_move(source: State, target: State) -> bool:
    return source in SOURCES[target]


def _move(
    session: Session,
    job_id: str,
    target: State,
    *,
    only_from: State | None = None,
    held_by: str | None = None,
    **values: Any,
) -> bool:
    sources = {only_from} if only_from else SOURCES[target]
    if not sources <= SOURCES[target]:
        raise ValueError(f"{only_from} -> {target} is not a transition")
    now = utcnow()
    values.setdefault("updated_at", now)
    if target.terminal:
        values.setdefault("finished_at", now)
    statement = (
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.state.in_([s.value for s in sources]))
        .values(state=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    if held_by is not None:
        statement = statement.where(JOBS.c.lease == held_by)
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1


def current(session: Session, job_id: str) -> State | None:
    state = session.scalar(select(JOBS.c.state).where(JOBS.c.id == job_id))
    return State(state) if state else None


def succeed(session: Session, job_id: str, result: Any, *, lease: str | None = None) -> bool:
    """RUNNING -> SUCCEEDED with ``result``; False if the job was no longer running.

    With ``lease``, only while that attempt still holds the job.
    """
    return _move(
        session,
        job_id,
        State.SUCCEEDED,
        held_by=lease,
        result=result,
        error_type=None,
        error_message=None,
    )


def fail(
    session: Session, job_id: str, *, error_type: str, message: str, lease: str | None = None
) -> bool:
    """QUEUED or RUNNING -> FAILED with a reason a user can read (``lease``: as in succeed)."""
    return _move(
        session,
        job_id,
        State.FAILED,
        held_by=lease,
        error_type=error_type[:64],
        error_message=message,
    )


def not_queued(session: Session, job_id: str, *, error_type: str, message: str) -> bool:
    """QUEUED -> FAILED for a job whose message was never sent, freeing its idempotency key
    so that the same key submitted again makes a new job. False if the job had moved on (a
    worker has it: its message got through after all), and nothing changes then."""
    return _move(
        session,
        job_id,
        State.FAILED,
        only_from=State.QUEUED,
        error_type=error_type[:64],
        error_message=message,
        idempotency_key=None,
    )


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
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.state == State.RUNNING.value)
        .values(cancel_requested=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return current(session, job_id)


def finish_cancelled(session: Session, job_id: str, *, lease: str | None = None) -> bool:
    """RUNNING -> CANCELLED, once the worker has stopped the job."""
    return _move(
        session,
        job_id,
        State.CANCELLED,
        held_by=lease,
        error_type="cancelled",
        error_message="cancelled by user",
    )


def requeue(session: Session, job_id: str, *, reason: str) -> bool:
    """RUNNING -> QUEUED, for a job whose worker vanished; the caller republishes it."""
    return _move(
        session,
        job_id,
        State.QUEUED,
        worker=None,
        lease=None,
        heartbeat_at=None,
        error_message=reason,
    )


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id)))


def heartbeat(
    session: Session,
    job_id: str,
    *,
    progress: dict[str, Any] | None = None,
    at: datetime | None = None,
    lease: str | None = None,
) -> bool:
    """Mark a running job alive (and record its progress); False once it is not running.

    With ``lease``, only while that attempt still holds the job.
    """
    values: dict[str, Any] = {"heartbeat_at": at or utcnow(), "updated_at": at or utcnow()}
    if progress is not None:
        values["progress"] = progress
    statement = (
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.state == State.RUNNING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if lease is not None:
        statement = statement.where(JOBS.c.lease == lease)
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount == 1


def holdings(session: Session, job_ids: Iterable[str]) -> dict[str, Holding]:
    """State, lease and cancel flag of ``job_ids``: what a worker checks for jobs in hand."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(JOBS.c.id, JOBS.c.state, JOBS.c.lease, JOBS.c.cancel_requested).where(
            JOBS.c.id.in_(ids)
        )
    )
    return {
        row.id: Holding(State(row.state), row.lease, bool(row.cancel_requested)) for row in rows
    }
