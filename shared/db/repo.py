"""Queries over the jobs table, and the conversion from row to :class:`JobView`.

Every function takes the caller's session and never commits (the caller owns
the transaction; see :func:`shared.db.engine.session_scope`). State changes are
not here: they belong to :mod:`shared.states`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import webhooks
from shared.db.direct import Direct
from shared.db.models import Job, utcnow
from shared.jobs import ErrorView, JobRequest, JobView
from shared.states import State


def digest(inputs: Any) -> tuple[str, int]:
    """SHA-256 of the canonical JSON of ``inputs``, and its size in bytes."""
    encoded = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.sha256(encoded).hexdigest(), len(encoded)


def _row_values(
    *,
    job_id: str,
    task: str,
    model: str,
    queue: str,
    inputs: Any,
    params: dict[str, Any],
    priority: int = 0,
    idempotency_key: str | None = None,
    inline_limit: int,
) -> dict[str, Any]:
    sha, size = digest(inputs)
    now = utcnow()
    return {
        "id": job_id,
        "task": task[:64],
        "model": model[:128],
        "queue": queue[:32],
        "state": State.QUEUED.value,
        "priority": priority,
        "inputs": inputs if size <= inline_limit else None,
        "inputs_digest": sha,
        "inputs_bytes": size,
        "params": params,
        "attempts": 0,
        "idempotency_key": idempotency_key,
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
    }


def _request_values(request: JobRequest, *, inline_limit: int) -> dict[str, Any]:
    if not request.id:
        raise ValueError("a job row needs an id")
    return _row_values(
        job_id=request.id,
        task=request.task,
        model=request.model,
        queue=request.queue,
        inputs=request.inputs,
        params=request.params,
        priority=request.priority,
        idempotency_key=request.idempotency_key,
        inline_limit=inline_limit,
    )


def insert_job(
    session: Session, request: JobRequest, *, inline_limit: int, tenant: str | None = None
) -> Job:
    """Add a QUEUED row for ``request`` (which must have an id).

    A job of a ``tenant`` (the gateway's) with a callback URL also gets its
    pending webhook, in the same transaction.
    """
    job = Job(**_request_values(request, inline_limit=inline_limit), tenant=tenant)
    session.add(job)
    session.flush()
    if tenant is not None and request.callback_url:
        webhooks.add(session, job_id=job.id, tenant=tenant, url=request.callback_url)
    return job


def insert_jobs(
    session: Session,
    requests: list[JobRequest],
    *,
    inline_limit: int,
    tenant: str | None = None,
) -> list[Job]:
    """Add QUEUED rows for ``requests`` (with ids) in one multi-row insert; the rows as
    inserted (not attached to the session). One statement, so an autocommit session will do."""
    rows = [
        {**_request_values(request, inline_limit=inline_limit), "tenant": tenant}
        for request in requests
    ]
    if rows:
        session.execute(insert(Job), rows)
    return [Job(**row) for row in rows]


def _insert_if_absent(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` but those whose id (or idempotency key) exists; the ids inserted."""
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = upsert(Job).values(rows).on_conflict_do_nothing().returning(Job.id)
    return set(session.scalars(statement))


def ensure_job(session: Session, request: JobRequest, *, inline_limit: int) -> bool:
    """Insert a QUEUED row unless one with this id (or idempotency key) exists.

    Workers call this for messages from producers without database access.
    Returns True if a row was inserted.
    """
    return bool(ensure_jobs(session, [request], inline_limit=inline_limit))


def ensure_jobs(session: Session, requests: list[JobRequest], *, inline_limit: int) -> set[str]:
    """:func:`ensure_job` for many requests, in one insert; the ids inserted."""
    rows = [_request_values(request, inline_limit=inline_limit) for request in requests]
    return _insert_if_absent(session, rows) if rows else set()


def _json_or_none(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value


def ensure_raw_job(
    session: Session, *, job_id: str, raw: Any, queue: str, inline_limit: int
) -> bool:
    """Insert a QUEUED row for a message that did not parse, keeping what can be read."""
    fields = raw if isinstance(raw, dict) else {}
    params = _json_or_none(fields.get("params"))
    return bool(
        _insert_if_absent(
            session,
            [
                _row_values(
                    job_id=job_id,
                    task=str(fields.get("task") or "unknown"),
                    model=str(fields.get("model") or "unknown"),
                    queue=queue,
                    inputs=_json_or_none(
                        fields.get("inputs", None if isinstance(raw, dict) else raw)
                    ),
                    params=params if isinstance(params, dict) else {},
                    inline_limit=inline_limit,
                )
            ],
        )
    )


#: The columns a :class:`JobView` shows or derives (never the inputs: up to 64 KiB of JSON).
VIEW_COLUMNS = (
    "id", "state", "task", "model", "queue", "priority", "result", "progress", "attempts",
    "worker", "idempotency_key", "schedule_id", "created_at", "started_at", "finished_at",
    "updated_at", "cancel_requested", "error_type", "error_message",
)  # fmt: skip
#: A job's view columns, by id (``{"id": ...}``): the read behind every status call and wait.
JOB_BY_ID = select(*(Job.__table__.c[name] for name in VIEW_COLUMNS)).where(
    Job.__table__.c.id == bindparam("id")
)


def get_view(session: Session | Direct, job_id: str) -> JobView | None:
    """The job as users see it, read with one Core query (no ORM object: this is the read
    that every wait and status call makes); on PostgreSQL ``Client.get`` sends it through a
    :class:`~shared.db.direct.Direct`."""
    if isinstance(session, Direct):
        rows = session.execute(JOB_BY_ID, {"id": job_id})
        row = rows[0] if rows else None
    else:
        row = session.execute(JOB_BY_ID, {"id": job_id}).first()
    return None if row is None else to_view(row)


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def ids_with_prefix(session: Session, prefix: str, *, limit: int = 2) -> Sequence[str]:
    """Job ids that start with ``prefix`` (at most ``limit``), for short ids in the CLI."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    statement = select(Job.id).where(Job.id.like(f"{escaped}%", escape="\\")).limit(limit)
    return session.scalars(statement).all()


def find_by_idempotency_key(session: Session, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.idempotency_key == key))


def list_jobs(
    session: Session,
    *,
    state: State | None = None,
    task: str | None = None,
    limit: int = 20,
) -> Sequence[Job]:
    """The newest jobs first, optionally of one state or task."""
    statement = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if state is not None:
        statement = statement.where(Job.state == state.value)
    if task is not None:
        statement = statement.where(Job.task == task)
    return session.scalars(statement).all()


def derived_view_fields(job: Any) -> dict[str, Any]:
    """What a view shows that is not a column as it stands: the error (type and message
    together), and ``cancel_requested`` only while the job still runs. ``job`` is a row with
    the jobs table's names: an ORM object, a Core row, or the gateway's narrower select."""
    error = None
    if job.error_type or (job.state == State.FAILED and job.error_message):
        error = ErrorView(type=job.error_type or "error", message=job.error_message or "")
    return {
        "error": error,
        "cancel_requested": bool(job.cancel_requested) and job.state == State.RUNNING,
    }


def to_view(job: Job | Row[Any]) -> JobView:
    """A job row (ORM object or Core row, the same names) as users see it."""
    return JobView(
        id=job.id,
        state=job.state,
        task=job.task,
        model=job.model,
        queue=job.queue,
        priority=job.priority,
        result=job.result,
        progress=job.progress,
        attempts=job.attempts,
        worker=job.worker,
        idempotency_key=job.idempotency_key,
        schedule_id=job.schedule_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        **derived_view_fields(job),
    )
