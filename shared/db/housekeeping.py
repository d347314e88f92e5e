"""Queries beat's housekeeping runs: expired jobs, and the workers it has seen.

Only finished jobs (SUCCEEDED, FAILED, CANCELLED) are ever deleted, each state
after its own retention, counted from when the job finished. Every function
takes the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db.models import Job, KnownWorker
from shared.states import TERMINAL, State


def expired_jobs(
    session: Session,
    *,
    retention: Mapping[State, timedelta | None],
    now: datetime,
    limit: int = 500,
) -> Sequence[tuple[str, Any, Any]]:
    """(id, result, progress) of finished jobs past their state's retention, oldest first.

    A state whose retention is None (or that is not finished) is never expired.
    """
    conditions = [
        and_(Job.state == state.value, Job.finished_at < now - keep)
        for state, keep in retention.items()
        if keep is not None and state in TERMINAL
    ]
    if not conditions:
        return []
    statement = (
        select(Job.id, Job.result, Job.progress)
        .where(or_(*conditions))
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return [(row.id, row.result, row.progress) for row in session.execute(statement)]


def delete_finished(session: Session, ids: Iterable[str]) -> int:
    """Delete these jobs, if finished; returns how many went."""
    wanted = list(ids)
    if not wanted:
        return 0
    statement = delete(Job).where(
        Job.id.in_(wanted), Job.state.in_([state.value for state in TERMINAL])
    )
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        statement, execution_options={"synchronize_session": False}
    )
    return result.rowcount


def saw_workers(session: Session, names: Iterable[str], *, now: datetime) -> None:
    """Record that the workers ``names`` answered at ``now``."""
    rows = [{"name": name[:255], "first_seen_at": now, "last_seen_at": now} for name in names]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(KnownWorker).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[KnownWorker.name],
            set_={"last_seen_at": statement.excluded.last_seen_at},
        )
    )


def known_workers(session: Session) -> Sequence[KnownWorker]:
    """Every worker seen, the most recently seen first."""
    statement = select(KnownWorker).order_by(KnownWorker.last_seen_at.desc(), KnownWorker.name)
    return session.scalars(statement).all()


def forget_workers(session: Session, *, not_seen_since: datetime) -> int:
    """Drop workers not seen since ``not_seen_since``; returns how many."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(KnownWorker).where(KnownWorker.last_seen_at < not_seen_since)
    )
    return result.rowcount
