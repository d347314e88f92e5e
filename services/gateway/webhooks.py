"""Webhook delivery: finished jobs with a callback URL are POSTed to it, signed, with retries.

How the gateway learns that a job finished: it polls. Every
``PIPEQ_WEBHOOK_POLL_SECONDS`` each gateway process asks the database for
pending webhooks whose job is terminal (:func:`shared.db.webhooks.due`, one
indexed query). Workers must not make HTTP calls and write only job rows, so
the row is the one signal there is; polling it needs no change to the worker,
survives gateway restarts (nothing lives only in memory), and costs one query
per second per process. The price is up to one poll interval of delay.

One attempt::

    claim (conditional UPDATE: one process wins; a lease, in case it dies)
      -> POST the job as JSON, Pipeq-Signature: t=..,v1=HMAC-SHA256(tenant secret, "t." + body)
      -> 2xx: DELIVERED | otherwise: PENDING again after backoff (doubling, capped, jittered)
                                     | past PIPEQ_WEBHOOK_MAX_ATTEMPTS: FAILED
      -> every attempt recorded in webhook_deliveries

Delivery is at least once: a receiver deduplicates on ``Pipeq-Delivery``'s job id.
Redirects are not followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from datetime import datetime, timedelta

import httpx

from services.gateway import metrics
from services.gateway.schemas import public_view
from shared import signatures
from shared.db import keys, repo, webhooks
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.errors import PipeqError
from shared.settings import Settings

log = logging.getLogger(__name__)


class Dispatcher:
    """The delivery loop of one gateway process (see the module docstring)."""

    BATCH = 50

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.db_url = settings.resolved_database_url
        timeout = httpx.Timeout(settings.webhook_timeout_seconds)
        self.http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.lease = timedelta(seconds=settings.webhook_timeout_seconds + 30)

    async def run(self) -> None:
        """Deliver until cancelled; database trouble is logged and retried next poll."""
        while True:
            try:
                busy = await self.tick()
            except PipeqError as exc:  # the database is away: try again next poll
                log.warning("webhooks: %s", exc)
                busy = 0
            except Exception:  # a bug: keep delivering the other webhooks
                log.exception("webhooks: delivery round failed")
                busy = 0
            if busy < self.BATCH:
                await asyncio.sleep(self.settings.webhook_poll_seconds)

    async def tick(self) -> int:
        """One round: claim what is due and deliver it; returns how many were attempted."""
        claimed = await asyncio.to_thread(self._claim_due)
        await asyncio.gather(*(self.deliver(job_id, attempt) for job_id, attempt in claimed))
        return len(claimed)

    def _claim_due(self) -> list[tuple[str, int]]:
        now = utcnow()
        with session_scope(self.db_url) as session:
            found = webhooks.due(session, now=now, limit=self.BATCH)
        claimed = []
        for job_id in found:
            with session_scope(self.db_url) as session:
                attempt = webhooks.claim(session, job_id, now=now, lease=self.lease)
            if attempt is not None:
                claimed.append((job_id, attempt))
        return claimed

    def _letter(self, job_id: str) -> tuple[str, bytes, str | None, str] | None:
        """(url, body, secret, event name) of a claimed webhook; None if it is gone."""
        with session_scope(self.db_url) as session:
            hook = webhooks.get(session, job_id)
            job = repo.get_job(session, job_id)
            if hook is None or job is None:
                return None
            secret = keys.webhook_secret(session, hook.tenant)
            view = public_view(repo.to_view(job), hook.tenant)
        body = json.dumps(view.model_dump(mode="json"), ensure_ascii=False).encode()
        return hook.url, body, secret, f"job.{view.state.lower()}"

    async def deliver(self, job_id: str, attempt: int) -> None:
        letter = await asyncio.to_thread(self._letter, job_id)
        if letter is None:
            return
        url, body, secret, event = letter
        if secret is None:  # its tenant is gone: nothing to sign with, nothing to retry
            await asyncio.to_thread(self._record, job_id, attempt, None, "no tenant", 0, None)
            return
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pipeq-gateway",
            "Pipeq-Event": event,
            "Pipeq-Delivery": f"{job_id}/{attempt}",
            signatures.HEADER: signatures.sign(secret, body),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = int((time.perf_counter() - started) * 1000)
        retry_at = self._retry_at(attempt)
        state = await asyncio.to_thread(
            self._record, job_id, attempt, status, error, elapsed, retry_at
        )
        metrics.WEBHOOK_ATTEMPTS.labels("ok" if error is None else "error").inc()
        log.info(
            "webhook %s attempt %d: %s", job_id, attempt, error or status, extra={"job_id": job_id}
        )
        if state is webhooks.WebhookState.FAILED:
            log.warning("webhook %s failed after %d attempts", job_id, attempt)

    def _retry_at(self, attempt: int) -> datetime | None:
        if attempt >= self.settings.webhook_max_attempts:
            return None
        base = self.settings.webhook_backoff_seconds * 2 ** (attempt - 1)
        delay = min(base, self.settings.webhook_backoff_max_seconds) * random.uniform(1.0, 1.2)
        return utcnow() + timedelta(seconds=delay)

    def _record(
        self,
        job_id: str,
        attempt: int,
        status: int | None,
        error: str | None,
        elapsed: int,
        retry_at: datetime | None,
    ) -> webhooks.WebhookState:
        with session_scope(self.db_url) as session:
            return webhooks.record(
                session,
                job_id,
                attempt=attempt,
                status_code=status,
                error=error,
                duration_ms=elapsed,
                retry_at=retry_at,
            )

    async def aclose(self) -> None:
        await self.http.aclose()
