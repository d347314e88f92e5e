"""Queries over webhooks and their deliveries: what the gateway's dispatcher reads and writes.

A webhook row is born PENDING with its job (:func:`shared.db.repo.insert_job`,
gateway jobs only). The dispatcher finds the ones whose job has finished
(:func:`due`), claims each with one conditional UPDATE (:func:`claim`: several
gateway processes may poll at once; only one wins a row, and the claim is a
lease, so a dispatcher that dies mid-delivery hands the row back when the lease
ends), then records the attempt (:func:`record`): DELIVERED, or PENDING again
after a backoff, or FAILED after the last attempt.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, Webhook, WebhookDelivery, utcnow
from shared.states import TERMINAL


class WebhookState(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


def add(session: Session, *, job_id: str, tenant: str, url: str) -> Webhook:
    now = utcnow()
    webhook = Webhook(
        job_id=job_id,
        tenant=tenant,
        url=url,
        state=WebhookState.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(webhook)
    session.flush()
    return webhook


def due(session: Session, *, now: datetime, limit: int = 50) -> Sequence[str]:
    """Ids of jobs that have finished and whose webhook is waiting for an attempt."""
    statement = (
        select(Webhook.job_id)
        .join(Job, Job.id == Webhook.job_id)
        .where(
            Webhook.state == WebhookState.PENDING.value,
            Webhook.next_attempt_at <= now,
            Job.state.in_([state.value for state in TERMINAL]),
        )
        .order_by(Webhook.next_attempt_at)
        .limit(limit)
    )
    return session.scalars(statement).all()


def claim(session: Session, job_id: str, *, now: datetime, lease: timedelta) -> int | None:
    """Take the webhook of ``job_id`` for one attempt; its attempt number, or None if lost."""
    statement = (
        update(Webhook)
        .where(
            Webhook.job_id == job_id,
            Webhook.state == WebhookState.PENDING.value,
            Webhook.next_attempt_at <= now,
        )
        .values(attempts=Webhook.attempts + 1, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    if result.rowcount != 1:
        return None
    return session.scalar(select(Webhook.attempts).where(Webhook.job_id == job_id))


def record(
    session: Session,
    job_id: str,
    *,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_at: datetime | None,
) -> WebhookState:
    """Log one attempt; DELIVERED on success, else PENDING until ``retry_at`` (None: FAILED)."""
    now = utcnow()
    session.add(
        WebhookDelivery(
            job_id=job_id,
            attempt=attempt,
            at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    values: dict[str, Any]
    if error is None:
        state = WebhookState.DELIVERED
        values = {"state": state.value, "delivered_at": now}
    elif retry_at is None:
        state = WebhookState.FAILED
        values = {"state": state.value}
    else:
        state = WebhookState.PENDING
        values = {"next_attempt_at": retry_at}
    session.execute(
        update(Webhook)
        .where(Webhook.job_id == job_id, Webhook.state == WebhookState.PENDING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return state


def get(session: Session, job_id: str) -> Webhook | None:
    return session.get(Webhook, job_id)


def deliveries(session: Session, job_id: str) -> Sequence[WebhookDelivery]:
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.attempt, WebhookDelivery.id)
    )
    return session.scalars(statement).all()
