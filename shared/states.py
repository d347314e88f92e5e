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

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, cast

from sqlalchemy import CursorResult, Table, case, literal, or_, select, text, update
from sqlalchemy.orm import Session

from shared.db.models import Job, JSONType, utcnow

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


# -- PostgreSQL: the worker's two commonest writes, one statement each -----------------------
#
# A job's claim and its success are each a few statements through SQLAlchemy Core above
# (read the row, update it, log the attempt); on PostgreSQL each is one statement over array
# parameters (``unnest``), with the attempt log written by the same statement. The text is
# the same for a group of any size (nothing to compile again), and a lone job's claim or
# success is one statement in its transaction. Jobs these statements do not write are left as
# they were, for the general path to sort out; SQLite (the embedded default) always takes it.
# Each names its rows by primary key as an array too (``id = ANY(:ids)``), so the planner
# looks them up by index whatever its statistics say of a table that grew since.


def on_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class Claim(NamedTuple):
    """A claim of :func:`start_matching`: the job, the new lease, and what its message says
    (the row must say the same to be claimed)."""

    job_id: str
    lease: str
    task: str
    model: str
    inputs_digest: str
    params: dict[str, Any]


# The two one-statement writes test the state through CASE, which no index can answer: they
# must find their rows by primary key (``id = ANY(:ids)``) and nothing else. A plain
# ``state = 'QUEUED'`` let the planner, with statistics taken while few jobs were queued,
# scan the state index instead, dead entries and all: after a burst, every job that has
# since finished still has its QUEUED and RUNNING entries there until vacuum (22,000 of them
# read by each claim of 32 after 20,000 jobs; 2.2 ms a claim, 1.4 ms by key).
_START_MATCHING = text("""
WITH claim AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:leases AS text[]), CAST(:tasks AS text[]),
        CAST(:models AS text[]), CAST(:digests AS text[]), CAST(:params AS jsonb[])
    ) AS c(id, lease, task, model, digest, params)
),
started AS (
    UPDATE jobs SET state = 'RUNNING', worker = :worker, lease = claim.lease,
        attempts = jobs.attempts + 1, started_at = :now, heartbeat_at = :now, updated_at = :now
    FROM claim
    WHERE jobs.id = ANY(CAST(:ids AS text[])) AND jobs.id = claim.id
        AND jobs.task = claim.task AND jobs.model = claim.model
        AND jobs.inputs_digest = claim.digest
        AND COALESCE(jobs.params, '{}'::jsonb) = claim.params
        AND CASE jobs.state
            WHEN 'QUEUED' THEN true
            WHEN 'RUNNING' THEN CAST(:stale AS timestamptz) IS NULL
                OR jobs.heartbeat_at IS NULL OR jobs.heartbeat_at < CAST(:stale AS timestamptz)
            ELSE false END
    RETURNING jobs.id, jobs.lease, jobs.attempts, jobs.created_at
),
lost AS (
    UPDATE job_attempts SET outcome = 'lost', finished_at = :now
    WHERE job_id IN (SELECT id FROM started WHERE attempts > 1) AND outcome IS NULL
),
logged AS (
    INSERT INTO job_attempts (lease, job_id, attempt, worker, started_at)
    SELECT lease, id, attempts, :worker, :now FROM started
)
SELECT id, attempts, created_at FROM started
""")


def start_matching(
    session: Session,
    claims: list[Claim],
    *,
    worker: str,
    stale_after: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, Started]:
    """PostgreSQL: :func:`start_many` for the jobs whose rows match their claims (task,
    model, inputs digest, parameters), each claim's attempt logged as
    :func:`shared.attempts.open_many` does (an earlier open one closed as lost), in one
    statement. Only the jobs started are in the answer; the others (no row, another job's
    row, finished, busy) are untouched."""
    now = now or utcnow()
    rows = session.execute(
        _START_MATCHING,
        {
            "ids": [claim.job_id for claim in claims],
            "leases": [claim.lease for claim in claims],
            "tasks": [claim.task for claim in claims],
            "models": [claim.model for claim in claims],
            "digests": [claim.inputs_digest for claim in claims],
            "params": [json.dumps(claim.params) for claim in claims],
            "worker": worker[:255],
            "now": now,
            "stale": None if stale_after is None else now - stale_after,
        },
    )
    leases = {claim.job_id: claim.lease for claim in claims}
    return {
        job_id: Started(
            Outcome.STARTED,
            attempt=attempt,
            state=State.RUNNING,
            lease=leases[job_id],
            created_at=created,
            started_at=now,
        )
        for job_id, attempt, created in rows
    }


_SUCCEED_CLOSING = text("""
WITH ending AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:leases AS text[]), CAST(:results AS jsonb[]),
        CAST(:progress AS jsonb[])
    ) AS e(id, lease, result, progress)
),
done AS (
    UPDATE jobs SET state = 'SUCCEEDED', result = ending.result, error_type = NULL,
        error_message = NULL, updated_at = :now, finished_at = :now,
        progress = COALESCE(ending.progress, jobs.progress)
    FROM ending
    WHERE jobs.id = ANY(CAST(:ids AS text[])) AND jobs.id = ending.id
        AND CASE jobs.state WHEN 'RUNNING' THEN true ELSE false END
        AND jobs.lease = ending.lease AND jobs.cancel_requested IS NOT TRUE
    RETURNING jobs.id, jobs.lease
),
closed AS (
    UPDATE job_attempts SET outcome = 'succeeded', finished_at = :now
    WHERE lease = ANY(CAST(:leases AS text[])) AND lease IN (SELECT lease FROM done)
        AND outcome IS NULL
)
SELECT id FROM done
""")


def succeed_closing(
    session: Session,
    results: dict[str, tuple[str, Any]],
    *,
    progress: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> set[str]:
    """PostgreSQL: :func:`succeed_many` with each written job's attempt closed as succeeded
    (:func:`shared.attempts.close_many`), in one statement; the ids written."""
    now = now or utcnow()
    progress = progress or {}
    found = session.execute(
        _SUCCEED_CLOSING,
        {
            "ids": list(results),
            "leases": [lease for lease, _result in results.values()],
            "results": [json.dumps(result) for _lease, result in results.values()],
            "progress": [
                None if progress.get(job_id) is None else json.dumps(progress[job_id])
                for job_id in results
            ],
            "now": now,
        },
    )
    return {job_id for (job_id,) in found}


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


class Beat(NamedTuple):
    """One job's heartbeat from its worker: the attempt's lease, and its progress if it
    changed since the last beat."""

    job_id: str
    lease: str
    progress: dict[str, Any] | None = None


# A worker's heartbeats for every job it holds, in one statement that never waits for a row
# lock: a row locked right now (its job's claim or success being written by the worker's
# group commit) is skipped. The old per-job UPDATEs in one transaction held the locks they
# had taken while waiting for the next, and a group's success statement locks its rows in
# another order: PostgreSQL found deadlocks between the two (one in every few 2,000-job
# bursts), each broken only after its deadlock_timeout (1 s) with the group's transaction
# rolled back and retried. A statement that never waits is in no deadlock; a job whose row
# was busy is alive anyway, and the supervisor's next poll stamps it.
_HEARTBEAT_FREE = text("""
WITH beat AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:leases AS text[]), CAST(:progress AS jsonb[])
    ) AS b(id, lease, progress)
),
free AS (
    SELECT jobs.id FROM jobs WHERE jobs.id = ANY(CAST(:ids AS text[]))
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET heartbeat_at = :now, updated_at = :now,
    progress = COALESCE(beat.progress, jobs.progress)
FROM beat
WHERE jobs.id = ANY(CAST(:ids AS text[])) AND jobs.id IN (SELECT id FROM free)
    AND jobs.id = beat.id
    AND CASE jobs.state WHEN 'RUNNING' THEN true ELSE false END AND jobs.lease = beat.lease
RETURNING jobs.id
""")


def heartbeat_many(session: Session, beats: list[Beat], *, at: datetime | None = None) -> set[str]:
    """:func:`heartbeat` for each of ``beats`` under its lease; the ids stamped. On
    PostgreSQL one statement that skips rows locked by another transaction instead of
    waiting for them (above): a job skipped is left for the next beat."""
    if not beats:
        return set()
    at = at or utcnow()
    if not on_postgres(session):
        return {
            beat.job_id
            for beat in beats
            if heartbeat(session, beat.job_id, lease=beat.lease, progress=beat.progress, at=at)
        }
    found = session.execute(
        _HEARTBEAT_FREE,
        {
            "ids": [beat.job_id for beat in beats],
            "leases": [beat.lease for beat in beats],
            "progress": [
                None if beat.progress is None else json.dumps(beat.progress) for beat in beats
            ],
            "now": at,
        },
    )
    return {job_id for (job_id,) in found}


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
