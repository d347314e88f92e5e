"""The Python producer: submit jobs, read them, wait for them, cancel them.

::

    from shared.client import Client

    client = Client()
    job = client.submit("text-classification", "tiny-text-classification", "I love it")
    print(client.wait(job.id).result)

``submit`` checks the job, inserts its row QUEUED, then publishes the one
self-contained message (with publisher confirms on RabbitMQ: ``submit`` returns
once the broker has the message on disk), and returns the job as inserted, QUEUED,
without reading it back (a worker may be running it already: ``get`` says). While
the broker is away the publish is retried for ``PIPEQ_PUBLISH_RETRY_SECONDS``; if it
stays away, the row is failed rather than left queued forever, and
:class:`BrokerUnavailable` raised. A broker that refuses the login (a wrong user, password
or vhost) fails the row at once, with :class:`~shared.errors.BrokerRefused`, and so does any
other failure to publish (a Ctrl-C included). A job failed this way ("not queued") gives up
its idempotency key: the same key submitted again makes a new job.

Idempotency keys make a retried submit safe: a job whose key was seen before is
returned as it stands, not sent again, unless it is still QUEUED, in which case
its message is published once more (the first publish may have been lost with a
crash; a second copy is harmless, the worker runs the job once). The same key
with a different task, model, inputs or parameters is refused.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery
from sqlalchemy.exc import IntegrityError

from shared import states
from shared.celery_app import make_app
from shared.db import repo
from shared.db.direct import direct
from shared.db.ended import Listener
from shared.db.engine import session_scope
from shared.db.reads import reader
from shared.errors import (
    BrokerUnavailable,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidJob,
    JobError,
    JobNotFound,
    PipeqError,
    translating,
)
from shared.jobs import JobRequest, JobView, parse_job
from shared.messages import check_json
from shared.publishing import publish_all, send_job
from shared.retrying import with_backoff
from shared.settings import Settings, get_settings
from shared.states import State

#: How the client's reads show in ``pg_stat_activity``.
READS_NAME = "pipeq-client-reads"


log = logging.getLogger(__name__)


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

    @functools.cached_property
    def _listener(self) -> Listener:
        return Listener(self._db)

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
        message = self._message(request)
        view, fresh = self._insert(request, tenant)
        if not fresh:
            if view.state != State.QUEUED:
                return view
            request = request.model_copy(update={"id": view.id})
            message = request.model_dump(mode="json", exclude_none=True)
        try:
            self.publish(message, request)
        except BaseException as exc:  # a Ctrl-C or a bug too: no row may wait for no message
            if fresh:  # a resent job's first message may be on its way: leave its row be
                self._not_queued([request.id or ""], exc)
            raise
        return view  # as submitted (QUEUED): no second read; a worker may have it already

    def submit_many(self, jobs: Iterable[dict[str, Any] | JobRequest]) -> builtins.list[JobView]:
        """Submit many jobs at once: every job is checked first (one bad job refuses the
        lot, naming it), then one transaction inserts the rows and one channel publishes the
        messages, waiting once for all of the broker's confirms (``publishing.py``).

        Jobs are dicts of the message contract (``task``, ``model``, ``inputs``, ``params``,
        ...) or parsed requests; the views come back in order, QUEUED. A job with an
        idempotency key goes through :meth:`submit_request` on its own. If the broker stays
        away, every job of the call is failed ("not queued") and
        :class:`BrokerUnavailable` raised, as for one job.
        """
        checked = [self._checked(index, job) for index, job in enumerate(jobs)]
        requests = [request for _message, request in checked]
        keyed = {index for index, request in enumerate(requests) if request.idempotency_key}
        messages = [pair for index, pair in enumerate(checked) if index not in keyed]
        fresh = [request for _message, request in messages]
        with session_scope(self._db, autocommit=True) as session:  # one multi-row INSERT
            rows = repo.insert_jobs(session, fresh, inline_limit=self.settings.inline_inputs_bytes)
        try:
            with_backoff(
                lambda: publish_all(self.app, messages),
                errors=BrokerUnavailable,
                seconds=self.settings.publish_retry_seconds,
                first=0.5,
                most=2.0,
            )
        except BaseException as exc:
            self._not_queued([request.id or "" for request in fresh], exc)
            raise
        views = iter(repo.to_view(row) for row in rows)
        return [
            self.submit_request(request) if index in keyed else next(views)
            for index, request in enumerate(requests)
        ]

    def _message(self, request: JobRequest) -> dict[str, Any]:
        """The message of ``request`` (which has its id); refused past the size limit."""
        return message_within(request, self.settings.max_message_bytes)

    def _checked(
        self, index: int, job: dict[str, Any] | JobRequest
    ) -> tuple[dict[str, Any], JobRequest]:
        """A job of :meth:`submit_many`, parsed, with an id, within the size limit: its
        message and its request."""
        try:
            if not isinstance(job, JobRequest):
                check_json(job)
                job = parse_job(job)
            request = job.with_id()
            return self._message(request), request
        except JobError as exc:  # which job of the lot, and why
            raise InvalidJob(f"job {index}: {exc}") from exc

    def _not_queued(self, job_ids: builtins.list[str], exc: BaseException) -> None:
        """Fail the QUEUED rows this call inserted, whose messages were not sent (one sent
        as the publish was cut short finds its job FAILED and is dropped), freeing their
        idempotency keys for a retry. Best effort: the caller re-raises ``exc`` either way."""
        code = exc.code if isinstance(exc, PipeqError) else "not_queued"
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or repr(exc)
        try:
            with session_scope(self._db) as session:
                for job_id in job_ids:
                    states.not_queued(
                        session, job_id, error_type=code, message=f"not queued: {reason}"
                    )
        except Exception as failure:  # the database away too: the publish's error matters more
            log.warning("jobs %s stay QUEUED, not sent: %s", ", ".join(job_ids), failure)

    def _insert(self, request: JobRequest, tenant: str | None = None) -> tuple[JobView, bool]:
        """Insert the row: the job as inserted and True, or the existing job and False when
        the idempotency key was seen."""
        limit = self.settings.inline_inputs_bytes
        key = request.idempotency_key
        if key is None and not (tenant is not None and request.callback_url):
            # One INSERT, committing by itself: no BEGIN and COMMIT round trips, no ORM flush
            # (1.41-1.91 -> 1.17-1.72 ms an insert, measured alternating in one process).
            with session_scope(self._db, autocommit=True) as session:
                (job,) = repo.insert_jobs(session, [request], inline_limit=limit, tenant=tenant)
            return repo.to_view(job), True
        try:
            with session_scope(self._db) as session:
                if key and (found := repo.find_by_idempotency_key(session, key)):
                    return _same_job(found, request), False
                job = repo.insert_job(session, request, inline_limit=limit, tenant=tenant)
                view = repo.to_view(job)
        except IntegrityError:
            if key is None:
                raise
            with session_scope(self._db) as session:
                found = repo.find_by_idempotency_key(session, key)
                if found is None:
                    raise
                return _same_job(found, request), False
        return view, True

    def publish(self, message: dict[str, Any], request: JobRequest) -> None:
        """Send ``message`` to its queue; raises :class:`BrokerUnavailable`."""
        with translating("publishing the job"):
            send_job(
                self.app,
                message,
                request,
                retry=True,
                retry_policy=retry_policy(self.settings.publish_retry_seconds),
            )

    def publish_message(self, message: dict[str, Any]) -> None:
        """Publish a job message as it stands (a requeue from the stale sweep, say)."""
        request = parse_job(message)
        self.publish(request.model_dump(mode="json", exclude_none=True), request)

    def get(self, job_id: str) -> JobView:
        fast = direct(self._db, READS_NAME)  # PostgreSQL: one statement, no session
        if fast is not None:
            view = repo.get_view(fast, job_id)
        else:
            view = reader(self._db, READS_NAME).read(lambda session: repo.get_view(session, job_id))
        if view is None:
            raise JobNotFound(f"no job {job_id!r}")
        return view

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
        """Until the job is terminal; raises TimeoutError after ``timeout`` seconds.

        On PostgreSQL the job's end wakes the wait at once (``shared/db/ended.py``); the
        row is also read again every ``poll`` seconds, growing to 1 s, in case a notice
        was lost (and on SQLite, which sends none).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        with self._listener.listening() as listener:
            while True:
                job = self.get(job_id)
                if State(job.state).terminal:
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s")
                listener.wait_for(job_id, delay if left is None else min(delay, left))
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


def message_within(request: JobRequest, limit: int) -> dict[str, Any]:
    """The message of ``request``, or :class:`InvalidInput` past ``limit`` bytes
    (``PIPEQ_MAX_MESSAGE_BYTES``): what ``submit`` and ``schedule add`` check."""
    message = request.model_dump(mode="json", exclude_none=True)
    size = len(json.dumps(message).encode())
    if size > limit:
        raise InvalidInput(f"job is {size} bytes; the limit is {limit} (PIPEQ_MAX_MESSAGE_BYTES)")
    return message


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
        raise IdempotencyKeyReused(request.idempotency_key or "", found.id)
    return repo.to_view(found)
