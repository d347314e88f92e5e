"""Starting a worker: pin the device, load the models, consume the queues.

The order is the point. ``pipeq worker`` calls :func:`services.worker.device.pin_device`
before anything imports torch; this module then loads every model registered
for the worker's queues, once, in the one process that will serve them, and
hands jobs to a thread pool: there is no fork after torch (and CUDA) load.
SIGTERM is Celery's warm shutdown: jobs in hand finish, and prefetched
messages, unacked, go back to the broker.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings

from services.worker.control import serve_inventory
from services.worker.device import Placement
from services.worker.memory import mib, rss_bytes
from services.worker.registry import Models
from services.worker.runner import JobRunner
from services.worker.tasks import register
from shared.celery_app import make_app
from shared.logs import configure_logging
from shared.queues import dead_letter_queue
from shared.registry import load_registry
from shared.settings import Settings, get_settings, redact_url

log = logging.getLogger(__name__)

QUIET_ENVIRONMENT = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def worker_name(queues: tuple[str, ...], placement: Placement) -> str:
    device = placement.requested.replace(":", "").replace(",", "-")
    return f"{'+'.join(queues)}-{device}@{socket.gethostname()}"


def run(
    *,
    queues: tuple[str, ...],
    placement: Placement,
    concurrency: int,
    prefetch_multiplier: int = 1,
    name: str | None = None,
    settings: Settings | None = None,
    memory_budget: int | None = None,
) -> int:
    """Serve ``queues`` until shut down; returns the process exit code."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    # Containers often run as root; Celery's warning about it is noise there.
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
    settings = settings or get_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    hostname = name or worker_name(queues, placement)
    log.info(
        "worker %s: queues %s, device %s (CUDA_VISIBLE_DEVICES=%r), broker %s",
        hostname,
        ",".join(queues),
        placement.requested,
        placement.visible_devices,
        redact_url(settings.resolved_broker_url),
    )

    # Checks every served spec (backends, placement): a bad registry stops here, before torch.
    models = Models(
        load_registry(settings.registry_path),
        device=placement.torch_device,
        queues=queues,
        budget=memory_budget or settings.memory_budget,
    )
    # Import the model stack before timing loads, so a load's seconds and memory are its own.
    started = time.perf_counter()
    import torch
    import transformers

    log.info(
        "torch %s and transformers %s imported in %.1f s (RSS %s)",
        torch.__version__,
        transformers.__version__,
        time.perf_counter() - started,
        mib(rss_bytes()),
    )
    before = rss_bytes()
    loaded = models.load_all()
    log.info(
        "worker %s: %d models loaded, process RSS %s (+%s for models)",
        hostname,
        len(loaded),
        mib(rss_bytes()),
        mib(max(rss_bytes() - before, 0)),
    )

    app = make_app(settings, prefetch_multiplier=prefetch_multiplier)
    app.conf.worker_consumer = "services.worker.consumer:JobConsumer"
    runner = JobRunner(models, worker=hostname, settings=settings)
    app.pipeq_runner = runner
    serve_inventory(models)
    register(app, runner)
    if not settings.embedded_broker:
        with app.connection_for_write() as connection:
            dead_letter_queue().declare(channel=connection.default_channel)

    worker = app.Worker(
        hostname=hostname,
        queues=list(queues),
        pool="threads",
        concurrency=concurrency,
        loglevel=settings.log_level,
        quiet=True,
        without_gossip=True,
        without_mingle=True,
    )
    worker.start()
    return int(worker.exitcode or 0)
