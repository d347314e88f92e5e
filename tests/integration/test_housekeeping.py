"""Housekeeping on PostgreSQL, run by ``pipeq beat --once``: what goes, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from shared import states
from shared.db import repo
from shared.db.engine import session_scope
from shared.db.models import Job
from shared.settings import Settings
from shared.states import State
from tests.aged_jobs import aged_job
from tests.helpers import pipeq


def _all_ids(settings: Settings) -> set[str]:
    with session_scope(settings.database_url) as session:
        return set(session.scalars(select(Job.id)))


def test_housekeeping_deletes_what_it_should_and_nothing_else(
    pipeq_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (store / "finetunes" / "old").mkdir(parents=True)
    (store / "finetunes" / "old" / "adapter.safetensors").write_bytes(b"w")
    (store / "finetunes" / "recent").mkdir(parents=True)
    (store / "partial").mkdir()
    outside = tmp_path / "not-ours"
    outside.mkdir()
    day = timedelta(days=1)
    with session_scope(settings.database_url) as session:
        expired = {
            aged_job(
                session,
                State.SUCCEEDED,
                age=day + timedelta(hours=1),
                result={"artifact": "finetunes/old"},
            ),
            aged_job(session, State.FAILED, age=4 * day, progress={"artifact": "partial"}),
            aged_job(session, State.SUCCEEDED, age=2 * day, result={"artifact": str(outside)}),
        }
        kept = {
            aged_job(
                session,
                State.SUCCEEDED,
                age=day - timedelta(hours=1),
                result={"artifact": "finetunes/recent"},
            ),
            aged_job(session, State.FAILED, age=2 * day),
            aged_job(session, State.CANCELLED, age=400 * day),
            aged_job(session, State.QUEUED, age=400 * day),
        }
        stale = aged_job(session, State.RUNNING, age=timedelta(minutes=6))
        alive = aged_job(session, State.RUNNING, age=timedelta(minutes=4))
    before = _all_ids(settings)
    env = dict(
        pipeq_env,
        PIPEQ_MODEL_STORE=str(store),
        PIPEQ_RETAIN_SUCCEEDED="1d",
        PIPEQ_RETAIN_FAILED="3d",
        PIPEQ_RETAIN_CANCELLED="never",
        PIPEQ_HEARTBEAT_TIMEOUT="5m",
        PIPEQ_WORKER_PING_TIMEOUT="0.2",
    )

    pipeq("beat", "--once", env=env)

    after = _all_ids(settings)
    assert before - after == expired
    assert kept | {stale, alive} <= after
    assert not (store / "finetunes" / "old").exists() and not (store / "partial").exists()
    assert (store / "finetunes" / "recent").is_dir() and outside.is_dir()
    with session_scope(settings.database_url) as session:
        assert states.current(session, alive) is State.RUNNING
        swept = repo.get_job(session, stale)
        assert swept is not None and swept.state == State.FAILED
        assert swept.error_type == "worker_lost"
    pipeq("beat", "--once", env=env)
    assert _all_ids(settings) == after
