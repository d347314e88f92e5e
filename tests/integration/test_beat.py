"""Schedules on real services: ``pipeq beat`` -> RabbitMQ -> the session's worker -> PostgreSQL."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from shared.client import Client
from shared.db import repo
from shared.db import schedules as schedules_repo
from shared.db.engine import session_scope
from shared.db.models import Schedule, utcnow
from shared.jobs import JobView
from shared.schedules import find
from shared.settings import Settings
from tests.beat_process import BeatProcess
from tests.helpers import WorkerProcess, pipeq

MODEL = "tiny-text-classification"


@pytest.fixture
def beat_env(pipeq_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A beat that looks often and pings quickly; schedules are cleared after each test."""
    env = dict(
        pipeq_env,
        PIPEQ_BEAT_POLL_INTERVAL="0.2",
        PIPEQ_WORKER_PING_INTERVAL="1",
        PIPEQ_WORKER_PING_TIMEOUT="0.5",
    )
    yield env
    with session_scope(pipeq_env["PIPEQ_DATABASE_URL"]) as session:
        session.execute(delete(Schedule))


def _jobs(settings: Settings, name: str) -> list[JobView]:
    """The schedule's jobs, oldest first."""
    with session_scope(settings.database_url) as session:
        rows = schedules_repo.jobs_of(session, find(session, name).id, limit=1000)
        return [repo.to_view(row) for row in reversed(rows)]


def _wait_for(
    settings: Settings, name: str, *, succeeded: int, timeout: float = 60
) -> list[JobView]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = _jobs(settings, name)
        if sum(job.state == "SUCCEEDED" for job in jobs) >= succeeded:
            return jobs
        time.sleep(0.3)
    raise TimeoutError(f"schedule {name}: fewer than {succeeded} jobs succeeded: {jobs}")


def _slot(job: JobView) -> datetime:
    # The run's idempotency key is schedule:<schedule id>:<the slot it was due at>.
    assert job.idempotency_key is not None and job.idempotency_key.startswith("schedule:")
    return datetime.fromisoformat(job.idempotency_key.split(":", 2)[2])


def test_an_interval_schedule_makes_jobs_that_complete_until_paused(
    worker: WorkerProcess,
    beat_env: dict[str, str],
    settings: Settings,
    client: Client,
    tmp_path: Path,
) -> None:
    added = pipeq(
        "schedule",
        "add",
        "tick",
        "text-classification",
        "--every",
        "1s",
        "-m",
        MODEL,
        "-t",
        "scheduled",
        "--params",
        '{"top_k": 2}',
        "--json",
        env=beat_env,
    )
    schedule_id = json.loads(added.stdout)["id"]
    beat = BeatProcess(env=beat_env, log=tmp_path / "beat.log").start()
    try:
        jobs = _wait_for(settings, "tick", succeeded=3)
        for job in jobs:
            assert job.schedule_id == schedule_id and job.task == "text-classification"
        first = client.get(jobs[0].id)  # an ordinary job, read like any other
        assert first.state == "SUCCEEDED" and len(first.result or []) == 2
        slots = [_slot(job) for job in jobs]
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(slots)]
        assert all(gap >= 1 and gap == int(gap) for gap in gaps), gaps  # the 1 s phase holds

        pipeq("schedule", "pause", "tick", env=beat_env)
        time.sleep(1.0)  # a tick that read the schedule before the pause may finish its run
        paused = {job.id for job in _jobs(settings, "tick")}
        time.sleep(3.0)  # three intervals
        assert {job.id for job in _jobs(settings, "tick")} == paused
        listed = json.loads(pipeq("schedule", "list", "--json", env=beat_env).stdout)
        assert listed["paused"] and listed["runs"] == len(paused)

        pipeq("schedule", "resume", "tick", env=beat_env)
        resumed = _wait_for(settings, "tick", succeeded=len(paused) + 2)
        assert len(resumed) > len(paused)

        workers = pipeq("workers", "--json", env=beat_env).stdout.splitlines()
        seen = {json.loads(line)["name"] for line in workers}
        assert first.worker in seen
    finally:
        code = beat.stop()
    assert code == 0 and "beat stopped" in beat.log()


def test_runs_missed_while_beat_was_down_run_once(
    worker: WorkerProcess, beat_env: dict[str, str], settings: Settings, client: Client
) -> None:
    pipeq(
        "schedule",
        "add",
        "hourly",
        "text-classification",
        "--every",
        "1h",
        "-m",
        MODEL,
        "-t",
        "catch up",
        env=beat_env,
    )
    missed_since = utcnow().replace(microsecond=0) - timedelta(hours=3, minutes=20)
    with session_scope(settings.database_url) as session:
        session.execute(update(Schedule).values(next_run_at=missed_since))

    pipeq("beat", "--once", env=beat_env)
    (job,) = _jobs(settings, "hourly")
    assert _slot(job) == missed_since
    assert client.wait(job.id, timeout=60).state == "SUCCEEDED"
    with session_scope(settings.database_url) as session:
        schedule = find(session, "hourly")
        assert schedule.next_run_at == missed_since + timedelta(hours=4)  # phase kept
        assert schedule.runs == 1 and schedule.last_job_id == job.id

    pipeq("beat", "--once", env=beat_env)
    assert [again.id for again in _jobs(settings, "hourly")] == [job.id]


def test_one_beat_is_active_and_a_standby_takes_over(
    beat_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    active = BeatProcess(env=beat_env, log=tmp_path / "active.log").start()
    standby = BeatProcess(env=beat_env, log=tmp_path / "standby.log")
    try:
        refused = pipeq("beat", "--no-wait", env=beat_env, check=False)
        assert refused.returncode == 1
        assert "another pipeq beat is active" in refused.stderr
        once = pipeq("beat", "--once", env=beat_env, check=False, timeout=30)  # no standing by
        assert once.returncode == 1 and "another pipeq beat is active" in once.stderr
        standby.start(ready=r"standing by")
        active.kill()  # no clean exit: PostgreSQL drops the lock with the session
        standby.wait_for(r"taking over", timeout=30)
        standby.wait_for(r"beat active")
        with session_scope(settings.database_url) as session:
            assert schedules_repo.next_due_at(session) is None  # it ticks on an empty table
    finally:
        active.kill()
        assert standby.stop() == 0
