"""PostgreSQL: a worker's claims, successes and heartbeats, one statement each.

A job's claim and its success are each a few statements through SQLAlchemy Core
(:mod:`shared.states.many`: read the row, update it, log the attempt); on PostgreSQL
each is one statement over array parameters (``unnest``), with the attempt log
written by the same statement. The text is the same for a group of any size (nothing
to compile again), and a lone job's claim or success is one statement in its
transaction. Jobs these statements do not write are left as they were, for the
general path to sort out; SQLite (the embedded default) always takes it. Each names
its rows by primary key as an array too (``id = ANY(:ids)``), so the planner looks
them up by index whatever its statistics say of a table that grew since.

Functions take the caller's session and never commit. The claim and the success of a lone
job may be given a :class:`~shared.db.direct.Direct` instead, each its own transaction.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.db.direct import Direct
from shared.db.models import utcnow
from shared.states.machine import Outcome, Started, State, heartbeat


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
    session: Session | Direct,
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
    session: Session | Direct,
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
