"""The HTTP gateway under load: job submissions and status queries per second, p50 and p95.

A Python load generator (httpx, asyncio, a fixed number of requests in flight)
drives a real ``pipeq gateway`` on PostgreSQL and RabbitMQ, first with one
process, then with two. Submissions are real: row inserted, message published
with confirms (no worker runs, so they stay queued). Status queries read those
jobs back, round robin. The generator shares the machine's cores with the
gateway, so figures here are a floor for a gateway on its own host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.bench.context import BenchContext, percentile
from tests.gateway_process import GatewayProcess, create_key
from tests.helpers import pipeq

NAME = "gateway"
SUBMISSIONS = 1000
STATUS_QUERIES = 6000
CONCURRENCY = 32
WORKERS = (1, 2)


async def _load(
    client: httpx.AsyncClient,
    request: Callable[[httpx.AsyncClient, int], Any],
    *,
    total: int,
    concurrency: int,
) -> tuple[float, list[float], list[Any]]:
    """Send ``total`` requests, ``concurrency`` at a time; (per second, latencies ms, results)."""
    latencies: list[float] = []
    results: list[Any] = []
    counter = iter(range(total))

    async def lane() -> None:
        for index in counter:
            started = time.perf_counter()
            response = await request(client, index)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            results.append(response)

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return total / (time.perf_counter() - began), latencies, results


async def _measure(url: str, key: str) -> dict[str, float]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        job = {"task": "text-classification", "model": "tiny-text-classification"}

        def submit(c: httpx.AsyncClient, i: int) -> Any:
            return c.post("/v1/jobs", json={**job, "inputs": f"text {i}"})

        submit_rate, submit_ms, made = await _load(
            client, submit, total=SUBMISSIONS, concurrency=CONCURRENCY
        )
        ids = [response.json()["id"] for response in made]

        def status(c: httpx.AsyncClient, i: int) -> Any:
            return c.get(f"/v1/jobs/{ids[i % len(ids)]}")

        await _load(client, status, total=500, concurrency=CONCURRENCY)  # warm the pools
        status_rate, status_ms, _ = await _load(
            client, status, total=STATUS_QUERIES, concurrency=CONCURRENCY
        )
    return {
        "submit_per_s": round(submit_rate),
        "submit_p50_ms": round(percentile(submit_ms, 50), 1),
        "submit_p95_ms": round(percentile(submit_ms, 95), 1),
        "status_per_s": round(status_rate),
        "status_p50_ms": round(percentile(status_ms, 50), 1),
        "status_p95_ms": round(percentile(status_ms, 95), 1),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    env = ctx.env(PIPEQ_LOG_LEVEL="WARNING")
    pipeq("db", "upgrade", env=env)
    key = create_key("bench", env)["key"]
    figures: dict[str, Any] = {}
    for workers in WORKERS:
        log = ctx.folder / f"gateway-{workers}.log"
        gateway = GatewayProcess(env=env, log=log, workers=workers).start()
        try:
            measured = asyncio.run(_measure(gateway.url, key))
        finally:
            gateway.stop()
        figures.update({f"gateway_w{workers}_{name}": value for name, value in measured.items()})
    figures["gateway_load_concurrency"] = CONCURRENCY
    return figures
