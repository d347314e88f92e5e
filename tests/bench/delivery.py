"""What reliability costs and buys: a burst's throughput, and how long a dead worker's job waits.

- ``burst``: 300 tiny jobs submitted back to back to one worker (4 threads); jobs/s from the
  first submit to the last terminal row. Every job pays for its lease, its attempt log row
  and its suspect check.
- ``takeover``: a job is running when its worker is SIGKILLed; seconds until it has succeeded
  on the other worker. Bounded by ``PIPEQ_LEASE_SECONDS`` (3 s here; 30 s by default): the
  redelivered copy waits that long for the silent lease before it takes over.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shared.client import Client
from shared.settings import Settings
from tests.bench.context import BenchContext
from tests.faults import WORKER_COMMAND
from tests.helpers import WorkerProcess, pipeq

NAME = "delivery"
BURST = 300
TASK, MODEL = "text-classification", "tiny-text-classification"


def run(ctx: BenchContext) -> dict[str, Any]:
    env = ctx.env(
        PIPEQ_MODELS=str(ctx.tiny_registry()),
        PIPEQ_HEARTBEAT_SECONDS="1",
        PIPEQ_LEASE_SECONDS="3",
    )
    pipeq("db", "upgrade", env=env)
    client = Client(
        Settings(
            broker_url=ctx.broker_url,
            database_url=ctx.database_url,
            home=Path(env["PIPEQ_HOME"]),
        )
    )
    figures: dict[str, Any] = {}
    workers = [
        WorkerProcess(
            queues=["nlp"],
            env=env,
            log=ctx.folder / f"delivery-{i}.log",
            extra=["--name", f"bench{i}@pipeq-bench"],
            command=WORKER_COMMAND,
        )
        for i in range(2)
    ]
    try:
        workers[0].start()
        began = time.perf_counter()
        ids = [client.submit(TASK, MODEL, f"text {i}").id for i in range(BURST)]
        for job_id in ids:
            client.wait(job_id, timeout=300, poll=0.01)
        figures["delivery_burst_jobs_per_s"] = round(BURST / (time.perf_counter() - began), 1)

        workers[1].start()
        job = client.submit(TASK, MODEL, "fault:wait=2")
        while client.get(job.id).state != "RUNNING":
            time.sleep(0.01)
        held_by = client.get(job.id).worker
        holder = next(w for w in workers if w.extra[-1] == held_by)
        killed = time.perf_counter()
        holder.kill()
        done = client.wait(job.id, timeout=120, poll=0.01)
        figures["delivery_takeover_seconds"] = round(time.perf_counter() - killed, 1)
        figures["delivery_takeover_attempts"] = done.attempts
    finally:
        for worker in workers:
            worker.stop()
    return figures
