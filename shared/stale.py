"""Jobs whose worker vanished: RUNNING, with a heartbeat older than a timeout.

A worker stamps ``heartbeat_at`` when it starts a job and, while it runs, every
``PIPEQ_HEARTBEAT_SECONDS`` (``services/worker/supervisor.py``). If the worker
dies and RabbitMQ redelivers the message, the next worker claims the job again
and nothing here is needed. If the message is gone (dead-lettered while a worker
held the job, say), the row would stay RUNNING for ever: beat calls
:func:`sweep_stale_jobs` periodically to fail such jobs with a clear reason, or
:func:`requeue_stale_jobs` to put them back on their queue when the row keeps
the whole job (inputs up to ``PIPEQ_INLINE_INPUTS_BYTES``), failing the rest.
Republishing is always safe: should the original message still exist, the
state machine runs the job once.

Pick a timeout well above the workers' lease (``PIPEQ_LEASE_SECONDS``) and the
time a redelivered message may wait in a backlog: a job failed here while its
message was still queued is not run.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared import attempts, states
from shared.db.models import Job, utcnow
from shared.states import State


def stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    now: datetime | None = None,
    limit: int = 1000,
    queues: Collection[str] | None = None,
    exclude_queues: Collection[str] = (),
) -> Sequence[str]:
    """Ids of RUNNING jobs not heard from within ``heartbeat_timeout`` (of ``queues``, if given)."""
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
    if queues is not None:
        statement = statement.where(Job.queue.in_(list(queues)))
    if exclude_queues:
        statement = statement.where(Job.queue.not_in(list(exclude_queues)))
    return session.scalars(statement).all()


def sweep_stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    now: datetime | None = None,
    exclude_queues: Collection[str] = (),
) -> list[str]:
    """Fail every stale RUNNING job (``worker_lost``); returns the ids it failed."""
    failed = []
    found = stale_jobs(
        session, heartbeat_timeout=heartbeat_timeout, now=now, exclude_queues=exclude_queues
    )
    for job_id in found:
        message = (
            f"worker lost: no heartbeat for over {heartbeat_timeout.total_seconds():.0f} s "
            "and the message was not redelivered"
        )
        if states.fail(session, job_id, error_type="worker_lost", message=message):
            attempts.close_open(session, job_id, attempts.Ending.LOST)
            failed.append(job_id)
    return failed


@dataclass
class StaleSweep:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def message_of(job: Job) -> dict[str, Any] | None:
    """The job message rebuilt from its row, or None if the row kept only a digest."""
    if job.inputs is None:
        return None
    message: dict[str, Any] = {
        "id": job.id,
        "task": job.task,
        "model": job.model,
        "inputs": job.inputs,
        "params": job.params or {},
        "priority": job.priority,
    }
    if job.idempotency_key:
        message["idempotency_key"] = job.idempotency_key
    return message


def requeue_stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    publish: Callable[[dict[str, Any]], None],
    now: datetime | None = None,
    queues: Collection[str] | None = None,
) -> StaleSweep:
    """Put stale RUNNING jobs back on their queue (``publish`` sends the message); fail
    those whose row does not keep the whole job.

    ``publish`` runs inside the caller's transaction, before it commits: if it
    raises, nothing changes; if the commit fails after it, the job has one
    message too many, which is harmless.
    """
    sweep = StaleSweep()
    reason = f"requeued: no heartbeat for over {heartbeat_timeout.total_seconds():.0f} s"
    for job_id in stale_jobs(session, heartbeat_timeout=heartbeat_timeout, now=now, queues=queues):
        job = session.get(Job, job_id)
        message = message_of(job) if job is not None else None
        if message is None:
            sweep.failed += sweep_one(session, job_id, heartbeat_timeout)
            continue
        if states.requeue(session, job_id, reason=reason):
            attempts.close_open(session, job_id, attempts.Ending.LOST)
            publish(message)
            sweep.requeued.append(job_id)
    return sweep


def sweep_one(session: Session, job_id: str, heartbeat_timeout: timedelta) -> list[str]:
    message = (
        f"worker lost: no heartbeat for over {heartbeat_timeout.total_seconds():.0f} s, "
        "and the row does not keep the inputs to requeue it"
    )
    if states.fail(session, job_id, error_type="worker_lost", message=message):
        attempts.close_open(session, job_id, attempts.Ending.LOST)
        return [job_id]
    return []
