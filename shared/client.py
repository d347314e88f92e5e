"""The Python producer: submit jobs, read them, wait for them, cancel them.

::

    from shared.client import Client

    client = Client()
    job = client.submit("text-classification", "tiny-text-classification", "I love it")
    print(client.wait(job.id).result)

``submit`` checks the job, inserts its row QUEUED, then publishes the one
self-contained message (with publisher confirms on RabbitMQ: ``submit`` returns
once the broker has the message on disk). While the broker is away the publish
is retried for ``PIPEQ_PUBLISH_RETRY_SECONDS``; if it stays away, the row is
failed rather than left queued forever, and :class:`BrokerUnavailable` raised.

Idempotency keys make a retried submit safe: a job whose key was seen before is
returned as it stands, not sent again, unless it is still QUEUED, in which case
its message is published once more (the first publish may have been lost with a
crash; a second copy is harmless, the worker runs the job once). The same key
with a different task, model, inputs or parameters is refused.
"""

from __future__ import annotations

import builtins
import json
import time
from typing import Any

from celery import Celery
from sqlalchemy.exc import IntegrityError

from shared import states
from shared.celery_app import make_app
from shared.db import repo
from shared.db.engine import session_scope
from shared.errors import BrokerUnavailable, InvalidInput, InvalidJob, JobNotFound, translating
from shared.jobs import TASK_NAME, JobRequest, JobView, parse_job
from shared.messages import check_json
from shared.settings import Settings, get_settings
from shared.states import State


class Client:
    """A producer with broker and database access (the CLI and gateway use one)."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self.settings)
        return self._app

    @property
    def _db(self) -> str:
        return self.settings.resolved_database_url

    def submit(
        self,
        task: str,
        model: str,
        inputs: Any,
        params: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        job_id: str | None = None,
    ) -> JobView:
        raw = {
            "task": task,
            "model": model,
            "inputs": inputs,
            "params": params or {},
            "priority": priority,
            "idempotency_key": idempotency_key,
            "id": job_id,
        }
        check_json(raw)
        return self.submit_request(parse_job(raw))

    def submit_request(self, request: JobRequest, *, tenant: str | None = None) -> JobView:
        """Insert and publish an already-parsed request; see the module docstring.

        ``tenant`` (the gateway's caller) is recorded in the row; it is not part
        of the message, so a producer cannot claim one.
        """
        request = request.with_id()
        message = request.model_dump(mode="json", exclude_none=True)
        size = len(json.dumps(message).encode())
        if size > self.settings.max_message_bytes:
            raise InvalidInput(
                f"job is {size} bytes; the limit is "
                f"{self.settings.max_message_bytes} (PIPEQ_MAX_MESSAGE_BYTES)"
            )
        existing = self._insert(request, tenant)
        if existing is not None:
            if existing.state != State.QUEUED:
                return existing
            request = request.model_copy(update={"id": existing.id})
            message = request.model_dump(mode="json", exclude_none=True)
        try:
            self.publish(message, request)
        except BrokerUnavailable as exc:
            with session_scope(self._db) as session:
                states.fail(
                    session, request.id or "", error_type=exc.code, message=f"not queued: {exc}"
                )
            raise
        return self.get(request.id or "")

    def _insert(self, request: JobRequest, tenant: str | None = None) -> JobView | None:
        """Insert the row; return the existing job when the idempotency key was seen."""
        limit = self.settings.inline_inputs_bytes
        key = request.idempotency_key
        try:
            with session_scope(self._db) as session:
                if key and (found := repo.find_by_idempotency_key(session, key)):
                    return _same_job(found, request)
                repo.insert_job(session, request, inline_limit=limit, tenant=tenant)
        except IntegrityError:
            if key is None:
                raise
            with session_scope(self._db) as session:
                found = repo.find_by_idempotency_key(session, key)
                if found is None:
                    raise
                return _same_job(found, request)
        return None

    def publish(self, message: dict[str, Any], request: JobRequest) -> None:
        """Send ``message`` to its queue; raises :class:`BrokerUnavailable`."""
        with translating("publishing the job"):
            self.app.send_task(
                TASK_NAME,
                args=[message],
                task_id=request.id,
                queue=request.queue,
                routing_key=request.queue,
                priority=request.priority,
                retry=True,
                retry_policy=retry_policy(self.settings.publish_retry_seconds),
            )

    def publish_message(self, message: dict[str, Any]) -> None:
        """Publish a job message as it stands (a requeue from the stale sweep, say)."""
        request = parse_job(message)
        self.publish(request.model_dump(mode="json", exclude_none=True), request)

    def get(self, job_id: str) -> JobView:
        with session_scope(self._db) as session:
            job = repo.get_job(session, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            return repo.to_view(job)

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of the one job whose id starts with ``id_or_prefix``."""
        with session_scope(self._db) as session:
            if repo.get_job(session, id_or_prefix) is not None:
                return id_or_prefix
            found = repo.ids_with_prefix(session, id_or_prefix) if id_or_prefix else []
        if len(found) == 1:
            return found[0]
        if not found:
            raise JobNotFound(f"no job {id_or_prefix!r}")
        raise JobNotFound(f"{id_or_prefix!r} matches several jobs; give more of the id")

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 0.05) -> JobView:
        """Poll until the job is terminal; raises TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            job = self.get(job_id)
            if State(job.state).terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def list(
        self, *, state: State | None = None, task: str | None = None, limit: int = 20
    ) -> builtins.list[JobView]:
        with session_scope(self._db) as session:
            rows = repo.list_jobs(session, state=state, task=task, limit=limit)
            return [repo.to_view(row) for row in rows]

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued job now, or ask its worker to stop a running one."""
        with session_scope(self._db) as session:
            if states.cancel(session, job_id) is None:
                raise JobNotFound(f"no job {job_id!r}")
        return self.get(job_id)


def retry_policy(seconds: float) -> dict[str, float]:
    """kombu's retry policy for about ``seconds`` of retrying (0.5 s, 1 s, ... then 2 s apart)."""
    start, step, most = 0.5, 0.5, 2.0
    retries, waited, interval = 0, 0.0, start
    while waited < seconds:
        waited += interval
        interval = min(interval + step, most)
        retries += 1
    return {
        "max_retries": retries,
        "interval_start": start,
        "interval_step": step,
        "interval_max": most,
    }


def _same_job(found: Any, request: JobRequest) -> JobView:
    """The job ``found`` by the request's idempotency key, if it is the same job."""
    digest, _size = repo.digest(request.inputs)
    same = (
        found.task == request.task
        and found.model == request.model
        and found.inputs_digest == digest
        and (found.params or {}) == request.params
    )
    if not same:
        raise InvalidJob(
            f"idempotency key {request.idempotency_key!r} was used for job {found.id} with "
            "another task, model, inputs or parameters"
        )
    return repo.to_view(found)
