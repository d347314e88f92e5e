"""Prometheus metrics of a worker process, and the small calls that feed them.

The runner reports each job's end (:func:`job_ended`) and each forward pass
(:func:`observe_batch`); the model registry reports loads and evictions
(:func:`model_loaded`, :func:`model_unloaded`). GPU memory is read when
Prometheus scrapes (:class:`GpuMemory`), from torch, and only where torch has
already initialised CUDA: a scrape never creates a CUDA context.

``pipeq worker`` serves ``/metrics`` on ``PIPEQ_METRICS_PORT`` (or
``--metrics-port``) once its models are loaded, so the port answering also means
"ready to consume"; unset, no port is opened. Several workers on one host need
a port each (or ``0``: any free port, logged at start). Labels stay small: task
names come from the routing table, models from the registry, states from
:class:`shared.states.State`.

Latencies come from the job's row: ``created_at`` (written by the producer, or
by the worker when the producer had no database) and ``started_at`` (this
claim). Producer and worker clocks differ across hosts; a negative span counts as 0.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: Seconds, from a millisecond forward pass to a long queue wait (fine-tuning has its own).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 43200,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

JOBS = Counter(
    "pipeq_worker_jobs",
    "Jobs this worker handled, by task and the state it left them in.",
    ["task", "state"],
)
END_TO_END = Histogram(
    "pipeq_worker_job_end_to_end_seconds",
    "From the job's creation to its end on this worker (queue wait + run).",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "pipeq_worker_job_queue_wait_seconds",
    "From the job's creation to its claim by this worker.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
RUN = Histogram(
    "pipeq_worker_job_run_seconds",
    "From the claim to the job's end on this worker.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
BATCH = Histogram(
    "pipeq_worker_batch_size",
    "Jobs served by one forward pass, by model.",
    ["model"],
    buckets=BATCH_BUCKETS,
)
MODEL_LOADS = Counter("pipeq_worker_model_loads", "Model loads in this process.", ["model"])
MODEL_LOAD_SECONDS = Gauge(
    "pipeq_worker_model_load_seconds", "Seconds the model's latest load took.", ["model"]
)
MODEL_BYTES = Gauge(
    "pipeq_worker_model_bytes",
    "Bytes of tensors of each loaded model (gone once evicted).",
    ["model"],
)
INFO = Gauge(
    "pipeq_worker_info", "This worker: its name, queues and device.", ["worker", "queues", "device"]
)

INVALID_TASK = "invalid"


def job_ended(
    task: str,
    state: str,
    *,
    created_at: datetime | None = None,
    started_at: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Count a job this worker handled, and time it when its row's times are known."""
    JOBS.labels(task, state).inc()
    now = now or datetime.now(UTC)
    if created_at is not None:
        END_TO_END.labels(task).observe(_seconds(created_at, now))
        if started_at is not None:
            QUEUE_WAIT.labels(task).observe(_seconds(created_at, started_at))
    if started_at is not None:
        RUN.labels(task).observe(_seconds(started_at, now))


def observe_batch(model: str, size: int) -> None:
    """One forward pass of ``model`` served ``size`` jobs."""
    BATCH.labels(model).observe(size)


def model_loaded(model: str, *, seconds: float, tensor_bytes: int) -> None:
    MODEL_LOADS.labels(model).inc()
    MODEL_LOAD_SECONDS.labels(model).set(seconds)
    MODEL_BYTES.labels(model).set(tensor_bytes)


def model_unloaded(model: str) -> None:
    """The model was evicted: its memory series goes (its load history stays)."""
    with contextlib.suppress(KeyError):
        MODEL_BYTES.remove(model)


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


class GpuMemory(Collector):
    """CUDA memory per visible device, read from torch at scrape time."""

    def collect(self) -> Iterable[Metric]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return []
        allocated = GaugeMetricFamily(
            "pipeq_worker_gpu_memory_allocated_bytes",
            "Bytes of CUDA memory held by tensors, per device this worker sees.",
            labels=["device"],
        )
        reserved = GaugeMetricFamily(
            "pipeq_worker_gpu_memory_reserved_bytes",
            "Bytes of CUDA memory torch's caching allocator holds, per device.",
            labels=["device"],
        )
        total = GaugeMetricFamily(
            "pipeq_worker_gpu_memory_total_bytes",
            "Bytes of memory of each device.",
            labels=["device"],
        )
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            allocated.add_metric([device], float(torch.cuda.memory_allocated(index)))
            reserved.add_metric([device], float(torch.cuda.memory_reserved(index)))
            total.add_metric([device], float(torch.cuda.get_device_properties(index).total_memory))
        return [allocated, reserved, total]


_GPU = GpuMemory()
REGISTRY.register(_GPU)


def serve(*, port: int, host: str, worker: str, queues: tuple[str, ...], device: str) -> int:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the port bound."""
    INFO.labels(worker, ",".join(queues), device).set(1)
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_port)
    log.info("metrics on http://%s:%d/metrics", host, bound, extra={"metrics_port": bound})
    return bound
