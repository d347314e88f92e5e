"""The attempt log: every claim of a job by a worker, and how that claim ended.

The state machine (:mod:`shared.states`) keeps one row per job; this log keeps
one row per *attempt*, written in the same transactions as the job's own state
changes. It is how an operator sees why a job ran three times, and it is the
data ``make chaos`` counts duplicates from: a job whose handler ran to the end
in more than one attempt (:data:`COMPLETED` outcomes) ran twice.

::

    open (outcome NULL) ──> succeeded | failed | cancelled | timeout | poison
                      ├───> superseded   ran to the end; its result was discarded
                      └───> lost         its worker died or fell silent; another
                                         attempt (or the stale sweep) took over

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, func, insert, select, update
from sqlalchemy.orm import Session

from shared.db.models import JobAttempt, utcnow

#: The attempt log's table, for Core statements (see ``shared/states/machine.py``).
ATTEMPTS: Final = cast(Table, JobAttempt.__table__)


class Ending(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    POISON = "poison"
    SUPERSEDED = "superseded"
    LOST = "lost"


#: Endings of an attempt that ran the job to its end (or, timeout, ended it): at most
#: one attempt per job may end so, or the job ran twice.
COMPLETED = frozenset(
    {Ending.SUCCEEDED, Ending.FAILED, Ending.CANCELLED, Ending.SUPERSEDED, Ending.TIMEOUT}
)


def open_attempt(
    session: Session,
    *,
    job_id: str,
    lease: str,
    attempt: int,
    worker: str,
    now: datetime | None = None,
) -> None:
    """Log a claim; any attempt of the job still open is closed as :attr:`Ending.LOST`."""
    open_many(session, [(job_id, lease, attempt)], worker=worker, now=now)


def open_many(
    session: Session,
    claims: list[tuple[str, str, int]],
    *,
    worker: str,
    now: datetime | None = None,
) -> None:
    """:func:`open_attempt` for many claims (job id, lease, attempt number) in one insert.
    A first attempt has no earlier one to close."""
    if not claims:
        return
    now = now or utcnow()
    for job_id, _lease, attempt in claims:
        if attempt > 1:
            close_open(session, job_id, Ending.LOST, now=now)
    rows = [
        {
            "lease": lease,
            "job_id": job_id,
            "attempt": attempt,
            "worker": worker[:255],
            "started_at": now,
        }
        for job_id, lease, attempt in claims
    ]
    session.execute(insert(ATTEMPTS), rows)


def close(session: Session, lease: str, ending: Ending, *, now: datetime | None = None) -> bool:
    """Record how the attempt ``lease`` ended, unless it already has an ending."""
    return close_many(session, [lease], ending, now=now) == 1


def close_many(
    session: Session, leases: list[str], ending: Ending, *, now: datetime | None = None
) -> int:
    """:func:`close` for many attempts with the same ending; how many were closed."""
    statement = (
        update(ATTEMPTS)
        .where(ATTEMPTS.c.lease.in_(leases), ATTEMPTS.c.outcome.is_(None))
        .values(outcome=ending.value, finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount


def close_open(
    session: Session, job_id: str, ending: Ending, *, now: datetime | None = None
) -> int:
    """Close every open attempt of ``job_id`` (a takeover, a sweep, a dead letter)."""
    statement = (
        update(ATTEMPTS)
        .where(ATTEMPTS.c.job_id == job_id, ATTEMPTS.c.outcome.is_(None))
        .values(outcome=ending.value, finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount


def of_job(session: Session, job_id: str) -> Sequence[JobAttempt]:
    statement = select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.attempt)
    return session.scalars(statement).all()


def completed_counts(session: Session) -> dict[str, int]:
    """For each job with at least one completed attempt, how many attempts completed."""
    statement = (
        select(ATTEMPTS.c.job_id, func.count())
        .where(ATTEMPTS.c.outcome.in_([ending.value for ending in COMPLETED]))
        .group_by(ATTEMPTS.c.job_id)
    )
    return {job_id: count for job_id, count in session.execute(statement)}
