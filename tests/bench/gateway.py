"""The HTTP gateway under load: job submissions and status queries per second, p50 and p95.

A Python load generator (:mod:`tests.bench.loadgen`: keep-alive connections, a
fixed number of requests in flight) drives a real ``pipeq gateway`` on
PostgreSQL and RabbitMQ, first with one process, then with two. Submissions are
real: row inserted, message published with confirms (no worker runs, so the
jobs stay queued). Status queries read those jobs back, round robin, with a
valid key. ``/healthz`` gives the floor of the HTTP stack alone. The generator,
PostgreSQL and RabbitMQ share the machine's cores with the gateway, so figures
here are a floor for a gateway on its own host.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.bench.context import BenchContext, percentile
from tests.bench.loadgen import Run, load, request_bytes
from tests.gateway_process import GatewayProcess, create_key
from tests.helpers import pipeq

NAME = "gateway"
SUBMISSIONS = 1000
STATUS_QUERIES = 6000
HEALTH_CHECKS = 3000
CONCURRENCY = 32
WORKERS = (1, 2)


def _figures(prefix: str, run: Run, expected: int) -> dict[str, float]:
    wrong = [status for status, _ in run.answers if status != expected]
    if wrong:
        raise RuntimeError(f"{prefix}: {len(wrong)} answers were not {expected}: {wrong[:5]}")
    return {
        f"{prefix}_per_s": round(run.per_second),
        f"{prefix}_p50_ms": round(percentile(run.latencies_ms, 50), 1),
        f"{prefix}_p95_ms": round(percentile(run.latencies_ms, 95), 1),
    }


async def _measure(port: int, key: str) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {key}"}
    posting = {**auth, "Content-Type": "application/json"}

    def submit(index: int) -> bytes:
        job = {"task": "text-classification", "model": "tiny-text-classification"}
        body = json.dumps({**job, "inputs": f"text {index}"}).encode()
        return request_bytes("POST", "/v1/jobs", port=port, headers=posting, body=body)

    submitted = await load(port, submit, total=SUBMISSIONS, concurrency=CONCURRENCY // 2)
    ids = [json.loads(body)["id"] for _, body in submitted.answers]
    reads = [request_bytes("GET", f"/v1/jobs/{job_id}", port=port, headers=auth) for job_id in ids]
    health = request_bytes("GET", "/healthz", port=port, headers={})

    await load(port, lambda i: reads[i % len(reads)], total=500, concurrency=CONCURRENCY)  # warm
    status = await load(
        port, lambda i: reads[i % len(reads)], total=STATUS_QUERIES, concurrency=CONCURRENCY
    )
    healthz = await load(port, lambda i: health, total=HEALTH_CHECKS, concurrency=CONCURRENCY)
    return {
        **_figures("submit", submitted, 202),
        **_figures("status", status, 200),
        **_figures("healthz", healthz, 200),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    env = ctx.env(PIPEQ_LOG_LEVEL="WARNING", PIPEQ_WEBHOOKS="false")
    pipeq("db", "upgrade", env=env)
    key = create_key("bench", env)["key"]
    figures: dict[str, Any] = {}
    for workers in WORKERS:
        log = ctx.folder / f"gateway-{workers}.log"
        gateway = GatewayProcess(env=env, log=log, workers=workers).start()
        try:
            measured = asyncio.run(_measure(gateway.port, key))
        finally:
            gateway.stop()
        figures.update({f"gateway_w{workers}_{name}": value for name, value in measured.items()})
    figures["gateway_load_concurrency"] = CONCURRENCY
    return figures
