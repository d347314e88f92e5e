"""What a worker tells ``pipeq models list``: the models it holds, over Celery's remote control.

Which models are loaded is a fact about live worker processes, and it changes with
every load and eviction. A worker answers the ``pipeq_models`` broadcast with
:meth:`services.worker.registry.Models.inventory`; ``pipeq models list`` sends it and
gathers the replies for a moment (``--timeout``). Chosen over publishing rows in the
database because a worker that dies or is killed takes its answer with it: there are
no stale rows to sweep, no heartbeat to keep, no write per load, and no migration.
The cost: only workers that answer within the timeout are seen, and a producer with
database access alone cannot ask (it needs the broker, as it does to submit).

Remote control uses Celery's pidbox fanout exchange; it works on RabbitMQ and on the
embedded filesystem broker alike.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery.worker.control import inspect_command

#: The remote-control command name (``app.control.broadcast(COMMAND, reply=True)``).
COMMAND = "pipeq_models"


class Inventory(Protocol):
    def inventory(self) -> dict[str, Any]: ...


def serve_inventory(models: Inventory) -> None:
    """Answer ``pipeq_models`` in this worker process with ``models.inventory()``."""

    def pipeq_models(state: Any) -> dict[str, Any]:
        """The models this worker holds, with their memory."""
        return models.inventory()

    inspect_command(name=COMMAND)(pipeq_models)
