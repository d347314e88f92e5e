"""One handler per task family: the table pipeq's workers dispatch on.

A new task is a module here with a :class:`~services.worker.handlers.base.Handler`
subclass, its parameter schema in ``shared/params``, its route in
``shared/queues.ROUTES``, a tiny model in ``services/worker/tiny``, and one line below.
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Handler, Loaded
from services.worker.handlers.text_classification import TextClassification
from shared.errors import UnsupportedTask

HANDLERS: dict[str, Handler[Any]] = {handler.task: handler for handler in (TextClassification(),)}

__all__ = ["HANDLERS", "Handler", "Loaded", "handler_for"]


def handler_for(task: str) -> Handler[Any]:
    try:
        return HANDLERS[task]
    except KeyError:
        raise UnsupportedTask(f"task {task!r} has no handler in this worker") from None
