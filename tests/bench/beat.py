"""Beat on real services: how late scheduled jobs are created, and how fast a standby takes over.

An ``--every 1s`` schedule runs for ``SECONDS``; a job's lateness is its
``created_at`` minus the due time named in its idempotency key. No worker is
needed: the figure is beat's, not the model's.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from shared.db import schedules as schedules_repo
from shared.db.engine import session_scope
from shared.schedules import find
from tests.beat_process import BeatProcess
from tests.bench.context import BenchContext, percentile
from tests.helpers import pipeq

NAME = "beat"
SECONDS = 20


def run(ctx: BenchContext) -> dict[str, Any]:
    env = ctx.env(PIPEQ_WORKER_PING_TIMEOUT="0.5")
    pipeq("db", "upgrade", env=env)
    started = time.perf_counter()
    pipeq("beat", "--once", env=env)
    once = time.perf_counter() - started

    active = BeatProcess(env=env, log=ctx.folder / "beat-active.log").start()
    pipeq("schedule", "add", "bench", "text-classification", "--every", "1s",
          "-m", "m", "-t", "x", env=env)  # fmt: skip
    time.sleep(SECONDS)
    standby = BeatProcess(env=env, log=ctx.folder / "beat-standby.log").start(ready="standing by")
    killed = time.monotonic()
    active.kill()
    standby.wait_for("taking over", timeout=60)
    takeover = time.monotonic() - killed
    pipeq("schedule", "pause", "bench", env=env)
    standby.stop()

    with session_scope(ctx.database_url) as session:
        jobs = schedules_repo.jobs_of(session, find(session, "bench").id, limit=10_000)
        late = [
            (
                job.created_at
                - datetime.fromisoformat((job.idempotency_key or "").split(":", 2)[2])
            ).total_seconds()
            * 1000
            for job in jobs
        ]
    return {
        "beat_every_1s_jobs": len(jobs),
        "beat_lateness_p50_ms": round(percentile(late, 50), 1),
        "beat_lateness_p95_ms": round(percentile(late, 95), 1),
        "beat_takeover_after_sigkill_s": round(takeover, 2),
        "beat_once_process_s": round(once, 2),
    }
