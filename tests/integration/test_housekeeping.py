"""Housekeeping on PostgreSQL, run by ``pipeq beat --once``: what goes, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.engine import session_scope
from shared.db.models import Job, utcnow
from shared.jobs import parse_job
from shared.settings import Settings
from shared.states import State
from tests.helpers import pipeq


def _job(
    session: Session,
    state: State,
    *,
    age: timedelta,
    result: Any = None,
    progress: dict[str, Any] | None = None,
) -> str:
    """A job row that reached ``state`` ``age`` ago (its message long gone)."""
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"}).with_id()
    job_id = request.id or ""
    repo.insert_job(session, request, inline_limit=1024)
    if state is not State.QUEUED:
        states.start(session, job_id, worker="gone@host")
        states.heartbeat(session, job_id, progress=progress)
    if state is State.SUCCEEDED:
        states.succeed(session, job_id, result)
    elif state is State.FAILED:
        states.fail(session, job_id, error_type="model_failure", message="boom")
    elif state is State.CANCELLED:
        states.finish_cancelled(session, job_id)
    when = utcnow() - age
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            created_at=when,
            updated_at=when,
            heartbeat_at=when,
            finished_at=when if state.terminal else None,
        )
    )
    return job_id


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
            _job(
                session,
                State.SUCCEEDED,
                age=day + timedelta(hours=1),
                result={"artifact": "finetunes/old"},
            ),
            _job(session, State.FAILED, age=4 * day, progress={"artifact": "partial"}),
            _job(session, State.SUCCEEDED, age=2 * day, result={"artifact": str(outside)}),
        }
        kept = {
            _job(
                session,
                State.SUCCEEDED,
                age=day - timedelta(hours=1),
                result={"artifact": "finetunes/recent"},
            ),
            _job(session, State.FAILED, age=2 * day),
            _job(session, State.CANCELLED, age=400 * day),
            _job(session, State.QUEUED, age=400 * day),
        }
        stale = _job(session, State.RUNNING, age=timedelta(minutes=6))
        alive = _job(session, State.RUNNING, age=timedelta(minutes=4))
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
