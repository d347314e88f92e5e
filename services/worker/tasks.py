"""The Celery task: thin, like a web view. It hands the message to the runner.

It accepts any arguments, so that a malformed message from a foreign producer
reaches the runner (and fails its own job with a clear message) instead of
dying in Celery's argument binding. If the database stays away, the message is
handed back to the broker unacked (``Reject(requeue=True)``) rather than lost.
A poison message (its job failed as such) is rejected without requeue, so
RabbitMQ moves it to the dead-letter queue; so does, after the queue's delivery
limit, a message that keeps raising outside any job (a bug). Otherwise the message is acked when
the task returns: after the job's outcome is in the database (late acks).

:func:`only_pipeq` strips Celery's built-in tasks (``celery.group``,
``celery.chord_unlock``, ``celery.backend_cleanup``...) from the worker: a
message may name a task, and a pipeq worker runs ``pipeq.run_job`` and nothing
else. Any other name fails its job and is dead-lettered (``consumer.py``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from services.worker.early_ack import TrackedRequest
from services.worker.runner import JobRunner, Poisoned
from shared.errors import TransientError
from shared.jobs import TASK_NAME


def register(app: Celery, runner: JobRunner) -> Task:
    # TrackedRequest: a train job's message is acked once the job is claimed (early_ack.py).
    @app.task(name=TASK_NAME, bind=True, Request=TrackedRequest)  # type: ignore[untyped-decorator]
    def run_job(self: Task, *args: Any, **kwargs: Any) -> str:
        message: Any
        if len(args) == 1 and not kwargs:
            message = args[0]
        elif not args:
            message = kwargs
        else:
            message = {"args": list(args), **kwargs}
        delivery = self.request.delivery_info or {}
        queue = str(delivery.get("routing_key") or "unknown")
        try:
            # Only a message the broker has delivered before can be a suspect (gate.py).
            redelivered = delivery.get("redelivered") is not False
            return runner.run(
                message, fallback_id=self.request.id, queue=queue, redelivered=redelivered
            )
        except TransientError as exc:  # its message says it all: no traceback in the log
            raise Reject(str(exc), requeue=True) from None
        except Poisoned as exc:
            raise Reject(str(exc), requeue=False) from None
        except Exception as exc:  # a bug outside any job: back to the queue, up to its limit
            raise Reject(f"internal error: {exc!r}", requeue=True) from exc

    return run_job


def only_pipeq(app: Celery) -> list[str]:
    """Unregister every task but pipeq's; returns the names removed."""
    removed = [name for name in list(app.tasks) if name != TASK_NAME]
    for name in removed:
        app.tasks.unregister(name)
    return removed
