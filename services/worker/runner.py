"""One job message, from arrival to its terminal row: what the Celery task calls.

::

    message -> parse_job ──invalid──> row FAILED (created if the producer had no DB)
                  │
                  └─> ensure row, start (QUEUED/RUNNING -> RUNNING)
                         ├─ already terminal (a redelivery): nothing runs; ack
                         └─ handler: params -> decode -> predict -> encode
                                ├─ ok ──────────> SUCCEEDED with the result
                                ├─ JobError ────> FAILED with its message
                                └─ a bug ───────> FAILED "internal error", worker goes on

Database writes are retried with backoff while the database is away; if it stays
away past ``db_retry_seconds`` the runner raises :class:`DatabaseUnavailable` and
the task hands the message back to the broker unacked.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from services.worker.handlers import handler_for
from services.worker.registry import Models
from shared import states
from shared.db import repo
from shared.db.engine import session_scope
from shared.errors import DatabaseUnavailable, InvalidInput, JobError, PipeqError
from shared.jobs import JobRequest, parse_job
from shared.settings import Settings
from shared.states import Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobRunner:
    """Runs job messages against this worker's :class:`Models`."""

    def __init__(
        self, models: Models, *, worker: str, settings: Settings, db_retry_seconds: float = 300.0
    ) -> None:
        self.models = models
        self.worker = worker
        self.settings = settings
        self.db_url = settings.resolved_database_url
        self.db_retry_seconds = db_retry_seconds

    # -- the lifecycle ---------------------------------------------------------------

    def run(self, raw: Any, *, fallback_id: str, queue: str = "unknown") -> str:
        """Process one message; returns the job's final state (or what it found)."""
        job_id = job_id_of(raw, fallback_id)
        try:
            request = self.parse(raw, job_id)
        except JobError as exc:
            self.reject(job_id, raw, exc, queue=queue)
            return states.State.FAILED.value
        started = self.persist(lambda session: self._claim(session, request))
        if started.outcome is not Outcome.STARTED:
            log.info(
                "job %s: %s (%s), not run again",
                job_id,
                started.outcome.value,
                started.state,
                extra={"job_id": job_id},
            )
            return started.state.value if started.state else started.outcome.value
        begun = time.perf_counter()
        try:
            result = self.execute(request)
        except JobError as exc:
            return self.finish_failed(job_id, exc.code, str(exc))
        except Exception as exc:  # a bug: fail the job, keep the worker
            log.exception("job %s: internal error", job_id, extra={"job_id": job_id})
            return self.finish_failed(
                job_id, "internal_error", f"internal error: {type(exc).__name__}: {exc}"
            )
        log.info(
            "job %s: %s on %s in %.1f ms",
            job_id,
            request.task,
            request.model,
            (time.perf_counter() - begun) * 1000,
            extra={"job_id": job_id},
        )
        return self.finish_succeeded(job_id, result)

    def parse(self, raw: Any, job_id: str) -> JobRequest:
        size = len(json.dumps(raw, default=repr).encode())
        if size > self.settings.max_message_bytes:
            raise InvalidInput(
                f"job is {size} bytes; the limit is {self.settings.max_message_bytes}"
            )
        if isinstance(raw, dict) and "id" not in raw:
            raw = {**raw, "id": job_id}
        return parse_job(raw)

    def execute(self, request: JobRequest) -> Any:
        """Run the handler for ``request`` (no database, no Celery)."""
        handler = handler_for(request.task)
        spec = self.models.spec(request.model)
        if spec.task != request.task:
            raise InvalidInput(f"model {request.model!r} serves {spec.task}, not {request.task}")
        params = handler.params(spec, request.params)
        items, batched = handler.decode(request.inputs, params)
        loaded = self.models.get(request.model)
        outputs = handler.predict(loaded, items, params)
        return handler.encode(outputs, params, batched)

    # -- rows ------------------------------------------------------------------------

    def _claim(self, session: Session, request: JobRequest) -> states.Started:
        repo.ensure_job(session, request, inline_limit=self.settings.inline_inputs_bytes)
        return states.start(session, request.id or "", worker=self.worker)

    def reject(self, job_id: str, raw: Any, exc: PipeqError, *, queue: str) -> None:
        """Fail a message that never became a valid job, creating its row if needed."""
        log.warning("job %s: refused: %s", job_id, exc, extra={"job_id": job_id})

        def write(session: Session) -> None:
            repo.ensure_raw_job(
                session,
                job_id=job_id,
                raw=raw,
                queue=queue,
                inline_limit=self.settings.inline_inputs_bytes,
            )
            states.fail(session, job_id, error_type=exc.code, message=str(exc))

        self.persist(write)

    def finish_succeeded(self, job_id: str, result: Any) -> str:
        def write(session: Session) -> str:
            if states.cancel_requested(session, job_id):
                states.finish_cancelled(session, job_id)
            elif not states.succeed(session, job_id, result):
                log.warning(
                    "job %s finished elsewhere first; result dropped",
                    job_id,
                    extra={"job_id": job_id},
                )
            return str(states.current(session, job_id))

        return self.persist(write)

    def finish_failed(self, job_id: str, code: str, message: str) -> str:
        log.info("job %s failed: %s", job_id, message, extra={"job_id": job_id})

        def write(session: Session) -> str:
            states.fail(session, job_id, error_type=code, message=message)
            return str(states.current(session, job_id))

        return self.persist(write)

    def persist(self, write: Callable[[Session], T]) -> T:
        """Run ``write`` in a transaction, retrying with backoff while the DB is away."""
        deadline = time.monotonic() + self.db_retry_seconds
        delay = 0.2
        while True:
            try:
                with session_scope(self.db_url) as session:
                    return write(session)
            except DatabaseUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


def job_id_of(raw: Any, fallback: str) -> str:
    """The job's id: the message's own if it is a UUID, else the Celery task id."""
    candidate = raw.get("id") if isinstance(raw, dict) else None
    for value in (candidate, fallback):
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                continue
    # A foreign producer's task id that is not a UUID: derive a stable one from it.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pipeq:{fallback}"))
