"""Celery's consumer, with one change: a message that cannot be run fails its job.

Stock Celery logs an undecodable message (not JSON) and acks it, rejects one of
a refused content type (pickle), one that names a task this worker does not
know, and one with no task header, all without a trace in the database: the
job would vanish.
Here, if the message's headers carry a task id, its row ends FAILED with the
reason; then the message is rejected without requeue, so RabbitMQ moves it to
the dead-letter queue. Nothing is ever unpickled: the body is not decoded again.

It also leaves out Celery's native delayed delivery (see ``Blueprint``), and sends
task events without publisher confirms (see :meth:`JobConsumer.connection_for_write`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from services.worker.runner import job_id_of
from shared.errors import InvalidJob
from shared.jobs import TASK_NAME
from shared.messages import read_body

log = logging.getLogger(__name__)


class JobConsumer(Consumer):  # type: ignore[misc]
    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        # pipeq never publishes with a countdown or ETA, so Celery's native delayed
        # delivery (28 extra quorum queues per vhost) is left out.
        default_steps = [
            step
            for step in Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

    def connection_for_write(self, url: str | None = None, heartbeat: float | None = None) -> Any:
        """The connection Celery's event dispatcher publishes on: without publisher confirms.

        Events are best-effort monitoring, not jobs, and a confirm wait there can hang the
        worker: the event loop also reads this connection (for heartbeats), so it may take
        the broker's ack of an event that a pool thread is waiting for, and that thread
        then blocks for ever holding the dispatcher's lock, with every other thread and the
        event loop queued behind it (seen on Celery 5.7 with the thread pool).
        """
        options = {**self.app.conf.broker_transport_options, "confirm_publish": False}
        connection = self.app.connection_for_write(
            url=url, heartbeat=heartbeat, transport_options=options
        )
        return self.ensure_connected(connection)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._refuse(message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        reason = "message refused: it has no task header; pipeq job messages name 'pipeq.run_job'"
        job, _problem = read_body(message.body, message.content_type)
        task_id = job_id_of(job, "") if isinstance(job, dict) and job.get("id") else None
        self._refuse(message, None, reason=reason, task_id=task_id)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = str((message.headers or {}).get("task"))[:100]
        reason = f"message refused: unknown task name {name!r}; pipeq workers run {TASK_NAME!r}"
        self._refuse(message, exc, reason=reason)

    def _refuse(
        self,
        message: Any,
        exc: Exception | None,
        *,
        reason: str = "",
        task_id: str | None = None,
    ) -> None:
        headers = message.headers or {}
        task_id = task_id or headers.get("id")
        reason = reason or (
            f"message refused: content type {message.content_type!r} could not be "
            f"decoded as JSON ({type(exc).__name__}); pipeq accepts JSON only"
        )
        extra = {"job_id": task_id} if isinstance(task_id, str) else {}
        log.error("refused message (task id %s): %s", task_id, reason, extra=extra)
        runner = getattr(self.app, "pipeq_runner", None)
        if isinstance(task_id, str) and runner is not None:
            queue = str((message.delivery_info or {}).get("routing_key") or "unknown")
            try:
                runner.reject(job_id_of(None, task_id), {}, InvalidJob(reason), queue=queue)
            except Exception:
                log.exception("could not record the refused message %s", task_id, extra=extra)
        message.reject_log_error(log, self.connection_errors, requeue=False)
