"""What the routes ask of pipeq, as plain synchronous calls (run in FastAPI's threadpool).

Submission goes through :meth:`shared.client.Client.submit_request`, the same
path as the CLI and the Python client (row QUEUED, then one published message);
the gateway adds only the tenant and the per-tenant idempotency key. Reads go
through :mod:`shared.db.tenancy`, which never returns another tenant's job.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.gateway.auth import Caller, KeyCache
from services.gateway.backlog import Backlog
from services.gateway.errors import ApiError, not_found
from services.gateway.schemas import (
    DeliveryView,
    JobPage,
    WebhookView,
    public_view,
    scoped_key,
)
from shared.client import Client
from shared.db import tenancy, webhooks
from shared.db.reads import Reader
from shared.errors import IdempotencyKeyReused, InvalidInput
from shared.jobs import JobRequest, JobView
from shared.settings import Settings
from shared.states import State

#: How the gateway's reads show in ``pg_stat_activity``.
READS_NAME = "pipeq-gateway-reads"


@dataclass
class Gateway:
    """One per gateway process: settings, the producer, the key cache."""

    settings: Settings
    client: Client = field(init=False)
    keys: KeyCache = field(init=False)
    reader: Reader = field(init=False)
    backlog: Backlog = field(init=False)

    def __post_init__(self) -> None:
        self.client = Client(self.settings)
        self.backlog = Backlog(self.db_url)
        self.reader = Reader(self.db_url, application_name=READS_NAME)
        self.keys = KeyCache(self.reader, ttl=self.settings.key_cache_seconds)

    @property
    def db_url(self) -> str:
        return self.settings.resolved_database_url

    def submit(self, request: JobRequest, caller: Caller) -> tuple[JobView, bool]:
        """Queue ``request`` for ``caller``; (the job, whether it already existed)."""
        given = request.idempotency_key
        if given is not None:
            request = request.model_copy(
                update={"idempotency_key": scoped_key(caller.tenant, given)}
            )
        request = request.with_id()
        try:
            job = self.client.submit_request(request, tenant=caller.tenant)
        except InvalidInput as exc:  # the only InvalidInput submit raises: the size limit
            raise ApiError(413, str(exc)) from exc
        except IdempotencyKeyReused as exc:  # named as the caller gave it, not as stored
            reused = IdempotencyKeyReused(given or "", exc.job_id)
            raise ApiError(422, str(reused), type=reused.code) from exc
        except IntegrityError as exc:
            raise ApiError(409, f"a job with id {request.id} already exists") from exc
        replayed = job.id != request.id
        if replayed and self.owned(job.id, caller) is None:
            raise ApiError(409, "this Idempotency-Key is in use by a job outside this tenant")
        return public_view(job, caller.tenant), replayed

    def owned(self, job_id: str, caller: Caller) -> JobView | None:
        view = self.reader.read(lambda session: tenancy.get_owned(session, job_id, caller.tenant))
        return public_view(view, caller.tenant) if view else None

    def get(self, job_id: str, caller: Caller) -> JobView:
        view = self.owned(job_id, caller)
        if view is None:
            raise not_found(job_id)
        return view

    def page(
        self,
        caller: Caller,
        *,
        state: State | None,
        task: str | None,
        cursor: str | None,
        limit: int,
    ) -> JobPage:
        after = decode_cursor(cursor) if cursor else None

        found = self.reader.read(
            lambda session: tenancy.page(
                session, caller.tenant, state=state, task=task, after=after, limit=limit + 1
            )
        )
        views = [public_view(view, caller.tenant) for view in found]
        more = len(views) > limit
        views = views[:limit]
        last = views[-1] if more else None
        next_cursor = encode_cursor(last.created_at, last.id) if last and last.created_at else None
        return JobPage(jobs=views, next_cursor=next_cursor)

    def cancel(self, job_id: str, caller: Caller) -> JobView:
        self.get(job_id, caller)
        self.client.cancel(job_id)
        return self.get(job_id, caller)

    def webhook(self, job_id: str, caller: Caller) -> WebhookView:
        self.get(job_id, caller)
        return self.reader.read(lambda session: self._webhook(session, job_id))

    @staticmethod
    def _webhook(session: Session, job_id: str) -> WebhookView:
        hook = webhooks.get(session, job_id)
        if hook is None:
            raise ApiError(404, f"job {job_id!r} has no webhook")
        attempts = [
            DeliveryView(
                attempt=d.attempt,
                at=d.at,
                status_code=d.status_code,
                error=d.error,
                duration_ms=d.duration_ms,
            )
            for d in webhooks.deliveries(session, job_id)
        ]
        pending = hook.state == webhooks.WebhookState.PENDING
        return WebhookView(
            url=hook.url,
            state=hook.state,
            attempts=hook.attempts,
            next_attempt_at=hook.next_attempt_at if pending else None,
            delivered_at=hook.delivered_at,
            deliveries=attempts,
        )


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(422, "cursor: not a cursor this API gave") from None
