"""Jobs as one tenant sees them: the gateway reads jobs only through these queries.

Every query is filtered by tenant in SQL, so a job of another tenant (or one
published straight to AMQP, which has none) is simply not found: the gateway
answers 404 and never tells that such a job exists. Lists are paged by keyset
(``created_at``, ``id``), newest first, which stays fast however deep a caller
pages and does not skip or repeat rows when new jobs arrive meanwhile.

These are the gateway's hot path, so they are plain Core queries, built once,
of the columns a :class:`JobView` shows (never the inputs, which may be 64 KiB
of JSON): no ORM objects, no statement built per call. :func:`view_of` makes the
same view as :func:`shared.db.repo.to_view` (a unit test holds them together).

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session

from shared.db.models import Job
from shared.db.repo import derived_view_fields
from shared.jobs import JobView
from shared.states import State

_TABLE = Job.__table__
_SHOWN = (
    "id", "state", "task", "model", "queue", "priority", "result", "progress", "attempts",
    "worker", "idempotency_key", "created_at", "started_at", "finished_at", "updated_at",
)  # fmt: skip
_VIEW = select(
    *(_TABLE.c[name] for name in _SHOWN),
    _TABLE.c.cancel_requested,
    _TABLE.c.error_type,
    _TABLE.c.error_message,
)
_OWNED = _VIEW.where(_TABLE.c.id == bindparam("job_id"), _TABLE.c.tenant == bindparam("tenant"))


def view_of(row: Any) -> JobView:
    """The :class:`JobView` of a row of ``_VIEW`` (or of a :class:`Job`)."""
    shown = {name: getattr(row, name) for name in _SHOWN}
    return JobView(**shown, **derived_view_fields(row))


def get_owned(session: Session, job_id: str, tenant: str) -> JobView | None:
    found = session.connection().execute(_OWNED, {"job_id": job_id, "tenant": tenant}).first()
    return view_of(found) if found else None


def page(
    session: Session,
    tenant: str,
    *,
    state: State | None = None,
    task: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[JobView]:
    """Up to ``limit`` jobs of ``tenant``, newest first, older than the ``after`` position."""
    c = _TABLE.c
    statement = (
        _VIEW.where(c.tenant == tenant).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    )
    if state is not None:
        statement = statement.where(c.state == state.value)
    if task is not None:
        statement = statement.where(c.task == task)
    if after is not None:
        created_at, job_id = after
        statement = statement.where(
            or_(c.created_at < created_at, and_(c.created_at == created_at, c.id < job_id))
        )
    return [view_of(row) for row in session.connection().execute(statement)]
