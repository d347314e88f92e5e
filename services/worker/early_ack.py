"""Train jobs are acked once claimed, so RabbitMQ's consumer timeout never cuts them off.

RabbitMQ closes the channel of a consumer that holds a message unacked past
``consumer_timeout`` (30 minutes by default; global on 3.10, per queue only from
3.12) and redelivers the message. Inference jobs end long before it; a
fine-tuning job runs for hours. So the message of a training job is acked as
soon as the job is claimed in the database under its lease (the runner calls
:func:`acknowledge`); from then on the database alone keeps the job: the
supervisor's heartbeats say it is alive, and if its worker dies, beat's stale
sweep (``shared.stale``) puts the job back on the train queue, where the next
worker resumes it from its last checkpoint in the model store.

Celery gives a task no handle on its message, so the task's request class
(:class:`TrackedRequest`) keeps a weak reference to each request in hand by
task id; :func:`acknowledge` acks it through Celery (which then does not ack
it again).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from celery.worker.request import Request

_in_hand: weakref.WeakValueDictionary[str, Request] = weakref.WeakValueDictionary()
_lock = threading.Lock()


class TrackedRequest(Request):  # type: ignore[misc]
    """Celery's request, findable by task id while the worker holds it.

    Registered when made (on receipt): Celery's strategy subclasses this class and
    replaces ``execute_using_pool`` without calling up, so that is no place to hook.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with _lock:
            _in_hand[self.id] = self


def acknowledge(task_id: str) -> bool:
    """Ack the message of the task ``task_id`` now; False if it is not in hand here."""
    with _lock:
        request = _in_hand.pop(task_id, None)
    if request is None or request.acknowledged:
        return False
    request.acknowledge()
    return True
