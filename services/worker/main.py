"""Starting a worker: pin the device, load the models, consume the queues.

The order is the point. ``pipeq worker`` calls :func:`services.worker.device.pin_device`
before anything imports torch; this module then loads every model registered
for the worker's queues, once, in the one process that will serve them, and
hands jobs to a thread pool: there is no fork after torch (and CUDA) load.
SIGTERM is Celery's warm shutdown: jobs in hand finish, and prefetched
messages, unacked, go back to the broker.

Beside Celery's own threads the worker runs two of pipeq's: the supervisor
(heartbeats, cancellations and time limits of the jobs in hand) and, on
RabbitMQ, the consumer of the dead-letter queue (see
``shared.deadletter_consumer`` for why it lives in every worker).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.worker import affinity, early_ack, metrics
from services.worker.device import Placement, check_visible, worker_name
from services.worker.gate import Gate
from services.worker.handlers import Handler, handler_for
from services.worker.inventory import serve_inventory
from services.worker.memory import freeze_heap, mib, rss_bytes
from services.worker.registry import Models
from services.worker.runner import JobRunner
from services.worker.supervisor import Supervisor
from services.worker.tasks import only_pipeq, register
from services.worker.threads import PassThreads, Peers
from shared.celery_app import make_app, reached
from shared.deadletter_consumer import DeadLetterConsumer
from shared.errors import DatabaseUnavailable
from shared.logs import configure_logging
from shared.queues import TRAIN, dead_letter_queue
from shared.registry import ModelSpec, configured_registry
from shared.settings import Settings, get_settings, redact_url

log = logging.getLogger(__name__)

#: Celery's loggers of a line per task received and per task succeeded.
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

QUIET_ENVIRONMENT = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}

#: Set before torch loads (libgomp reads it then). Torch's OpenMP threads spin between
#: operations; by default they go on spinning long after a forward pass ends, taking the
#: cores the job's own bookkeeping (and PostgreSQL, RabbitMQ) needs next. A short spin
#: keeps them quick within a pass and idle after it: on a 2-core CPU a lone MiniLM job
#: went from 28-29 to 22-26 ms, submit to result. Set it in the environment to override.
OPENMP_ENVIRONMENT = {"GOMP_SPINCOUNT": "20000"}


def check_database(settings: Settings) -> None:
    """Refuse a database without pipeq's tables (or behind its migrations) before loading
    models; one that cannot be reached yet is only logged, since the worker retries it."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin and "Context" lines
    from shared.db.migrate import check_current

    try:
        check_current(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        log.warning("not checking the database's schema: %s", exc)


def check_broker(app: Any, settings: Settings) -> None:
    """Reach the broker before loading models, waiting for it as long as it takes (it may be
    starting beside us, or coming back: a worker that exited would only be restarted into
    the same wait), and declare the dead-letter queue. A broker that refuses the login or
    the queue stops the worker at once: waiting will not change the URL."""
    if settings.embedded_broker:
        return

    def retrying(exc: Exception, interval: float) -> None:
        log.warning("broker unavailable (%s); trying again in %.1f s", exc, interval)

    with reached(app, "connecting to the broker", errback=retrying) as connection:
        dead_letter_queue().declare(channel=connection.default_channel)


def default_concurrency(specs: list[ModelSpec]) -> int:
    """Threads enough for one full batch to form while another runs (batching.py)."""
    return min(max([4, *(2 * spec.batching.max_size for spec in specs)]), 64)


def run(
    *,
    queues: tuple[str, ...],
    placement: Placement,
    concurrency: int | None = None,
    prefetch_multiplier: int = 1,
    name: str | None = None,
    settings: Settings | None = None,
    memory_budget: int | None = None,
    handlers: Callable[[str], Handler[Any]] = handler_for,
    metrics_port: int | None = None,
    torch_threads: int | None = None,
    lone_threads: int | None = None,
    group_file: Path | None = None,
    cores: list[int] | None = None,
    process: str | None = None,
) -> int:
    """Serve ``queues`` until shut down; returns the process exit code.

    ``torch_threads`` (set in the environment by :func:`~services.worker.device.pin_threads`
    before torch loads) is applied again once it has; ``lone_threads``, where given, is what
    a pass whose job is the only one in hand runs on, and ``group_file`` where the processes of
    one command share their jobs in hand (``threads.py``); ``cores``, where given, are the
    cores this process keeps its threads on, all but its forward passes (``affinity.py``);
    ``process`` tags the log lines of one of several processes (``pipeq worker
    --processes``). ``handlers`` is the seam through which tests run the real worker with
    fault-injecting handlers (``tests/faults.py``).
    """
    for key, value in {**QUIET_ENVIRONMENT, **OPENMP_ENVIRONMENT}.items():
        os.environ.setdefault(key, value)
    if cores:  # before this process starts any thread: they all inherit it
        affinity.pin(cores)
    # Containers often run as root; Celery's warning about it is noise there.
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
    settings = settings or get_settings()
    configure_logging(settings.log_level, as_json=settings.log_json, process=process)
    quiet_celery_task_lines()
    hostname = name or worker_name(queues, placement)
    log.info(
        "worker %s: queues %s, device %s (CUDA_VISIBLE_DEVICES=%r), broker %s",
        hostname,
        ",".join(queues),
        placement.requested,
        placement.visible_devices,
        redact_url(settings.resolved_broker_url),
    )
    if cores:
        log.info("threads on cores %s, forward passes on any", ",".join(map(str, cores)))

    check_visible(placement)
    check_database(settings)
    app = make_app(settings, prefetch_multiplier=prefetch_multiplier)
    check_broker(app, settings)
    registry = configured_registry(settings)
    served = registry.for_queues(queues)
    log.log(
        logging.INFO if served or queues == (TRAIN,) else logging.WARNING,
        "worker %s: registry %s, %d of its models on these queues",
        hostname,
        registry.path,
        len(served),
    )
    # Checks every served spec (backends, placement): a bad registry stops here, before torch.
    models = Models(
        registry,
        device=placement.torch_device,
        queues=queues,
        budget=memory_budget or settings.memory_budget,
        store=settings.resolved_model_store,
    )
    # Import the model stack before timing loads, so a load's seconds and memory are its own.
    started = time.perf_counter()
    import torch
    import transformers

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    log.info(
        "torch %s and transformers %s imported in %.1f s (RSS %s); %d torch threads",
        torch.__version__,
        transformers.__version__,
        time.perf_counter() - started,
        mib(rss_bytes()),
        torch.get_num_threads(),
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

    concurrency = concurrency or default_concurrency(served)
    app.conf.worker_consumer = "services.worker.consumer:JobConsumer"
    supervisor = Supervisor(
        db_url=settings.resolved_database_url, heartbeat_seconds=settings.heartbeat_seconds
    ).start()
    peers = Peers(group_file, int(process or 1)) if group_file else None
    threads = PassThreads(busy=torch_threads, lone=lone_threads, peers=peers)
    runner = JobRunner(
        models,
        worker=hostname,
        settings=settings,
        handlers=handlers,
        supervisor=supervisor,
        ack_claimed=early_ack.acknowledge,
        threads=threads,
        gate=Gate(on_change=peers.publish if peers else None),
    )
    app.pipeq_runner = runner
    serve_inventory(models)
    register(app, runner)
    only_pipeq(app)
    dead_letters = None
    if not settings.embedded_broker:
        dead_letters = DeadLetterConsumer(
            app.connection_for_write(), settings, db_retry_seconds=settings.db_retry_seconds
        )
        dead_letters.start_thread()

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
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port is not None:  # last before consuming: the port answering means "ready"
        metrics.serve(
            port=port,
            host=settings.metrics_host,
            worker=hostname,
            queues=queues,
            device=placement.requested,
        )
    # Celery warns, on every lost connection, that it may one day cancel running late-ack
    # tasks. Threads cannot be cancelled; a redelivered copy waits on the job's lease instead.
    # (Set here: building the worker resets Celery's warning filters.)
    warnings.filterwarnings("ignore", message=r"(?s).*on connection loss cancels all")
    log.debug("%d objects frozen out of full garbage collections", freeze_heap())
    try:
        worker.start()
    finally:
        supervisor.close()
        if dead_letters is not None:
            dead_letters.stop()
    return int(worker.exitcode or 0)


def quiet_celery_task_lines() -> None:
    """Celery's "received" and "succeeded" lines for every task only at DEBUG (PIPEQ_LOG_LEVEL).

    A job's line is pipeq's own (``job ...: task on model in N ms``, or why it failed), which
    says more. Under load, two more lines a job were a tenth of the worker's time holding the
    GIL, most of it threads queueing for the log handler's lock. Celery's warnings and errors
    about a task (a message rejected, a task raising) still show.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in CELERY_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
