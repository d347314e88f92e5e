"""A burst of tiny jobs through a real worker whose supervisor beats every 20 ms.

The group commit writes a batch's successes in one statement; the supervisor's beats used to
be one UPDATE per held job in one transaction, and the two deadlocked: PostgreSQL broke each
deadlock after its 1 s timeout by rolling the group back, and the worker tried its writes
again (logged). With the old beats this test failed in 6 of 8 runs (checked; it is a race,
so not every time: ``test_heartbeats_postgres.py`` pins the cause, a beat waiting for a
locked row, deterministically). Beats that skip locked rows (``states.heartbeat_many``) leave
every write to go through the first time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.client import Client
from shared.settings import Settings
from tests.helpers import WorkerProcess, service_env
from tests.infra import isolated_services

MODEL = "tiny-text-classification"
JOBS = 2000


@pytest.fixture(scope="module")
def beating(
    tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, WorkerProcess]]:
    folder = tmp_path_factory.mktemp("beats")
    with isolated_services() as services:
        env = service_env(
            services.broker_url,
            services.database_url,
            models=tiny_registry,
            home=folder / "home",
            PIPEQ_HEARTBEAT_SECONDS="0.02",
            PIPEQ_LOG_LEVEL="INFO",
        )
        worker = WorkerProcess(
            queues=["nlp"],
            env=env,
            log=folder / "worker.log",
            extra=["--concurrency", "64", "--name", "beats@pipeq-tests"],
        ).start(timeout=180)
        settings = Settings(
            broker_url=services.broker_url,
            database_url=services.database_url,
            models=tiny_registry,
            home=folder / "home",
        )
        try:
            yield Client(settings), worker
        finally:
            worker.stop()


def test_a_burst_beaten_every_20_ms_writes_every_row_the_first_time(
    beating: tuple[Client, WorkerProcess],
) -> None:
    client, worker = beating
    jobs = [
        {"task": "text-classification", "model": MODEL, "inputs": f"burst text {i}"}
        for i in range(JOBS)
    ]
    views = [view for i in range(0, JOBS, 50) for view in client.submit_many(jobs[i : i + 50])]
    done = [client.wait(view.id, timeout=180) for view in views]
    assert [job.state for job in done] == ["SUCCEEDED"] * JOBS
    log = worker.log()
    assert "batch " in log  # the jobs did run in batches, beside the beats
    assert "rolled the transaction back" not in log
    assert "database unavailable" not in log
