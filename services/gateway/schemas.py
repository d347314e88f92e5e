"""What the gateway sends and receives, beyond :class:`shared.jobs.JobView` (wire only)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel, Field

from shared.jobs import JobView

#: Longest ``Idempotency-Key``: with the tenant prefix it fits the jobs column (200).
MAX_IDEMPOTENCY_KEY: Final = 128


def public_view(view: JobView, tenant: str) -> JobView:
    """``view`` as its tenant sees it: idempotency keys are stored as ``tenant:key``."""
    key = view.idempotency_key
    prefix = f"{tenant}:"
    if key is not None and key.startswith(prefix):
        return view.model_copy(update={"idempotency_key": key[len(prefix) :]})
    return view


def scoped_key(tenant: str, key: str) -> str:
    """The stored form of a tenant's idempotency key: tenants never share a key space."""
    return f"{tenant}:{key}"


class Submitted(BaseModel):
    """The answer to ``POST /v1/jobs``."""

    id: str
    state: str
    status_url: str = Field(description="GET it for the job's state and result.")
    events_url: str = Field(description="Server-sent events of the job until it ends.")
    job: JobView


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next (older) page; null on the last."
    )


class DeliveryView(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookView(BaseModel):
    url: str
    state: str = Field(description="PENDING, DELIVERED or FAILED.")
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    deliveries: list[DeliveryView]


class FieldError(BaseModel):
    loc: list[str | int]
    message: str


class ErrorDetail(BaseModel):
    type: str = Field(description="A short code: unauthorized, not_found, invalid_job...")
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error the gateway answers with, whatever its status."""

    error: ErrorDetail


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
