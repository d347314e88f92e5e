"""Lone jobs through the whole service: submit -> RabbitMQ -> worker -> PostgreSQL -> visible."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shared.client import Client
from shared.settings import Settings
from tests.bench.context import BenchContext, percentile
from tests.helpers import WorkerProcess, pipeq

NAME = "roundtrip"
JOBS = 100


def run(ctx: BenchContext) -> dict[str, Any]:
    env = ctx.env(PIPEQ_MODELS=str(ctx.tiny_registry()))
    pipeq("db", "upgrade", env=env)
    worker = WorkerProcess(queues=["nlp"], env=env, log=ctx.folder / "roundtrip.log").start()
    try:
        client = Client(
            Settings(
                broker_url=ctx.broker_url,
                database_url=ctx.database_url,
                home=Path(env["PIPEQ_HOME"]),
            )
        )
        latencies = []
        for i in range(JOBS):
            started = time.perf_counter()
            job = client.submit("text-classification", "tiny-text-classification", f"text {i}")
            client.wait(job.id, poll=0.002)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        worker.stop()
    return {
        "roundtrip_tiny_p50_ms": round(percentile(latencies, 50), 1),
        "roundtrip_tiny_p95_ms": round(percentile(latencies, 95), 1),
    }
