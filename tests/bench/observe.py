"""What observability costs: a burst with metrics, JSON logs and task events on, and off.

Each round starts a worker (4 threads) and submits 300 tiny jobs back to back; jobs/s from
the first submit to the last terminal row. "on" is a deployed worker and producer: metrics
on a port, JSON logs, task events (three per job from the worker, one from the producer);
"off" has none of them. Rounds alternate off/on twice, so drift on a shared machine falls
on both. Also: one scrape of the worker's /metrics after its burst (time and size).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from shared.client import Client
from shared.settings import Settings
from tests.bench.context import BenchContext
from tests.helpers import WorkerProcess, pipeq

NAME = "observe"
BURST = 300
ROUNDS = ("off", "on", "off", "on")
TASK, MODEL = "text-classification", "tiny-text-classification"


def run(ctx: BenchContext) -> dict[str, Any]:
    base = ctx.env(PIPEQ_MODELS=str(ctx.tiny_registry()))
    pipeq("db", "upgrade", env=base)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    figures: dict[str, Any] = {}
    for index, mode in enumerate(ROUNDS):
        on = mode == "on"
        env = {**base, "PIPEQ_TASK_EVENTS": str(on).lower(), "PIPEQ_LOG_JSON": str(on).lower()}
        extra = ["--metrics-port", "0"] if on else []
        worker = WorkerProcess(
            queues=["nlp"], env=env, log=ctx.folder / f"observe-{index}.log", extra=extra
        )
        client = Client(
            Settings(
                broker_url=ctx.broker_url,
                database_url=ctx.database_url,
                home=Path(env["PIPEQ_HOME"]),
                task_events=on,
            )
        )
        try:
            worker.start()
            began = time.perf_counter()
            ids = [client.submit(TASK, MODEL, f"text {i}").id for i in range(BURST)]
            for job_id in ids:
                client.wait(job_id, timeout=300, poll=0.01)
            rates[mode].append(BURST / (time.perf_counter() - began))
            if on:
                found = re.search(r"metrics on http://[^:]+:(\d+)/metrics", worker.log())
                assert found, "the worker logged no metrics port"
                url = f"http://127.0.0.1:{found.group(1)}/metrics"
                scraped = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as response:
                    size = len(response.read())
                figures["observe_scrape_ms"] = round((time.perf_counter() - scraped) * 1000, 1)
                figures["observe_scrape_bytes"] = size
        finally:
            worker.stop()
    for mode, values in rates.items():
        figures[f"observe_burst_{mode}_jobs_per_s"] = [round(value, 1) for value in values]
    return figures
