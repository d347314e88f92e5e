"""Jobs as one tenant sees them: the gateway reads jobs only through these queries.

Every query is filtered by tenant in SQL, so a job of another tenant (or one
published straight to AMQP, which has none) is simply not found: the gateway
answers 404 and never tells that such a job exists. Lists are paged by keyset
(``created_at``, ``id``), newest first, which stays fast however deep a caller
pages and does not skip or repeat rows when new jobs arrive meanwhile.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shared.db.models import Job
from shared.states import State


def get_owned(session: Session, job_id: str, tenant: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))


def page(
    session: Session,
    tenant: str,
    *,
    state: State | None = None,
    task: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> Sequence[Job]:
    """Up to ``limit`` jobs of ``tenant``, newest first, older than the ``after`` position."""
    statement = (
        select(Job)
        .where(Job.tenant == tenant)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    if state is not None:
        statement = statement.where(Job.state == state.value)
    if task is not None:
        statement = statement.where(Job.task == task)
    if after is not None:
        created_at, job_id = after
        statement = statement.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    return session.scalars(statement).all()
