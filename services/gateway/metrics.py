"""Prometheus metrics of a gateway process, and the ASGI middleware that counts requests.

With ``--workers N`` (N > 1) ``pipeq gateway`` sets ``PROMETHEUS_MULTIPROC_DIR``
before the worker processes start, and ``/metrics`` sums every process's files
(prometheus_client's multiprocess mode); with one process it reads memory.
Requests are labelled by route template (``/v1/jobs/{job_id}``), never by raw
path, so the label set stays small.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "pipeq_gateway_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "pipeq_gateway_request_seconds",
    "Time to answer an HTTP request (to its end, for event streams).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SUBMITTED = Counter(
    "pipeq_gateway_jobs_submitted_total", "Jobs queued through the gateway.", ["task"]
)
WEBHOOK_ATTEMPTS = Counter(
    "pipeq_gateway_webhook_attempts_total", "Webhook delivery attempts.", ["outcome"]
)
SSE_STREAMS = Gauge(
    "pipeq_gateway_event_streams", "Open event streams.", multiprocess_mode="livesum"
)


def exposition(*extra: Collector) -> tuple[bytes, str]:
    """The metrics text of this gateway (all its processes in multiprocess mode).

    ``extra`` collectors (the backlog) are read by this process alone: they are
    not per-process figures to be summed.
    """
    registry: CollectorRegistry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    payload = generate_latest(registry)
    if extra:
        more = CollectorRegistry()
        for collector in extra:
            more.register(collector)
        payload += generate_latest(more)
    return payload, CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: no per-request task or copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
