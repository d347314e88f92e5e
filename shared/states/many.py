"""Claims and successes for a group of jobs, one ``UPDATE ... RETURNING`` each.

A worker's group commit claims and ends the jobs of a batch together. These are the
statements it uses on any database (SQLite, the embedded default, included); on
PostgreSQL it prefers :mod:`shared.states.postgres`, which logs the attempts in the
same statement. A lone :func:`start` is a group of one.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, literal, or_, select, update
from sqlalchemy.orm import Session

from shared.db.models import JSONType, utcnow
from shared.states.machine import JOBS, Outcome, Started, State


def start(
    session: Session,
    job_id: str,
    *,
    worker: str,
    lease: str | None = None,
    stale_after: timedelta | None = None,
    now: datetime | None = None,
) -> Started:
    """Claim a job for ``worker`` under a new lease: QUEUED (or RUNNING) becomes RUNNING.

    Without ``stale_after`` a RUNNING job is always taken over (a redelivery after
    its worker died); with it, only once its heartbeat is older than that, and
    otherwise the answer is :attr:`Outcome.BUSY`.
    """
    leases = {job_id: lease or str(uuid.uuid4())}
    return start_many(session, leases, worker=worker, stale_after=stale_after, now=now)[job_id]


def start_many(
    session: Session,
    leases: dict[str, str],
    *,
    worker: str,
    stale_after: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, Started]:
    """:func:`start` for many jobs at once, each under its own lease (``leases``: job id to
    lease), in one ``UPDATE ... RETURNING``; what each claim found, by job id."""
    now = now or utcnow()
    ids = list(leases)
    takeover = JOBS.c.state == State.RUNNING.value
    if stale_after is not None:
        takeover = takeover & or_(
            JOBS.c.heartbeat_at.is_(None), JOBS.c.heartbeat_at < now - stale_after
        )
    statement = (
        update(JOBS)
        .where(JOBS.c.id.in_(ids), or_(JOBS.c.state == State.QUEUED.value, takeover))
        .values(
            state=State.RUNNING.value,
            worker=worker,
            lease=_per_job(leases),
            attempts=JOBS.c.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            updated_at=now,
        )
        .returning(JOBS.c.id, JOBS.c.attempts, JOBS.c.created_at)
        .execution_options(synchronize_session=False)
    )
    found: dict[str, Started] = {
        job_id: Started(
            Outcome.STARTED,
            attempt=attempt or 1,
            state=State.RUNNING,
            lease=leases[job_id],
            created_at=created,
            started_at=now,
        )
        for job_id, attempt, created in session.execute(statement)
    }
    rest = [job_id for job_id in ids if job_id not in found]
    if rest:
        query = select(JOBS.c.id, JOBS.c.state).where(JOBS.c.id.in_(rest))
        seen = {row.id: row.state for row in session.execute(query)}
        for job_id in rest:
            state = seen.get(job_id)
            if state is None:
                found[job_id] = Started(Outcome.MISSING)
            elif state == State.RUNNING:
                found[job_id] = Started(Outcome.BUSY, state=State.RUNNING)
            else:
                found[job_id] = Started(Outcome.FINISHED, state=State(state))
    return found


def succeed_many(
    session: Session,
    results: dict[str, tuple[str, Any]],
    *,
    progress: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> set[str]:
    """:func:`succeed` for many jobs at once (``results``: job id to its lease and result), in
    one ``UPDATE ... RETURNING``: each job only while its lease holds it and no cancel was
    asked; ``progress`` (by job id, for some) is written with it. Returns the ids written;
    the caller sorts out the others one by one."""
    now = now or utcnow()
    extra = {"progress": _per_job(progress, JSONType, else_=JOBS.c.progress)} if progress else {}
    leases = {job_id: lease for job_id, (lease, _result) in results.items()}
    values = {job_id: result for job_id, (_lease, result) in results.items()}
    statement = (
        update(JOBS)
        .where(
            JOBS.c.id.in_(list(results)),
            JOBS.c.state == State.RUNNING.value,
            JOBS.c.lease == _per_job(leases),
            JOBS.c.cancel_requested.is_not(True),
        )
        .values(
            state=State.SUCCEEDED.value,
            result=_per_job(values, JSONType),
            error_type=None,
            error_message=None,
            updated_at=now,
            finished_at=now,
            **extra,
        )
        .returning(JOBS.c.id)
        .execution_options(synchronize_session=False)
    )
    return set(session.scalars(statement))


def _per_job(values: dict[str, Any], type_: Any = None, *, else_: Any = None) -> Any:
    """A column value that differs by job: ``CASE WHEN id = :id THEN :value ... [ELSE ...] END``.

    The WHENs are padded to a power of two with an id no job has: SQLAlchemy compiles one
    statement per shape, and a worker's groups come in every size from 1 to twice its batch,
    so unpadded a fresh worker spent a share of its first thousand jobs compiling SQL.
    """
    thens = [(job_id, literal(value, type_)) for job_id, value in values.items()]
    # Each padding its own element, of the values' type: either would change the cache key.
    kind = thens[0][1].type if thens else type_
    thens += [(NO_JOB, literal(None, kind)) for _ in range(_bucket(len(thens)) - len(thens))]
    return case(*((JOBS.c.id == job_id, then) for job_id, then in thens), else_=else_)


#: An id that no job has (ids are UUIDs), for padding.
NO_JOB = ""


def _bucket(count: int) -> int:
    """The power of two at or above ``count``."""
    return 1 << max(count - 1, 0).bit_length()
