"""Housekeeping deletes what it should and nothing else: retention per state, artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.beat.housekeeping import purge_expired, record_workers, sweep_stale
from shared import states
from shared.artifacts import Removal, artifact_of, artifacts_of, inside_store, remove_artifact
from shared.db import housekeeping as repo
from shared.db.engine import get_engine
from shared.db.models import Job
from shared.settings import Settings
from shared.states import State
from tests.aged_jobs import aged_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        home=tmp_path / "home",
        model_store=tmp_path / "store",
        retain_succeeded=DAY,
        retain_failed=3 * DAY,
        retain_cancelled=None,
    )


def _ids(db_url: str) -> set[str]:
    with Session(get_engine(db_url)) as session:
        return set(session.scalars(select(Job.id)))


def test_each_state_is_kept_for_its_own_retention(settings: Settings, db_url: str) -> None:
    with Session(get_engine(db_url)) as session, session.begin():
        old_success = aged_job(session, State.SUCCEEDED, age=DAY + timedelta(minutes=1), now=NOW)
        young_success = aged_job(session, State.SUCCEEDED, age=DAY - timedelta(minutes=1), now=NOW)
        failure_in_retention = aged_job(session, State.FAILED, age=2 * DAY, now=NOW)
        old_failure = aged_job(session, State.FAILED, age=4 * DAY, now=NOW)
        ancient_cancel = aged_job(
            session, State.CANCELLED, age=365 * DAY, now=NOW
        )  # retention: never
        ancient_queued = aged_job(session, State.QUEUED, age=365 * DAY, now=NOW)  # not finished
        ancient_running = aged_job(session, State.RUNNING, age=365 * DAY, now=NOW)
    purge = purge_expired(settings, now=NOW)
    assert purge.deleted == 2
    assert _ids(db_url) == {
        young_success,
        failure_in_retention,
        ancient_cancel,
        ancient_queued,
        ancient_running,
    }
    assert old_success not in _ids(db_url) and old_failure not in _ids(db_url)
    assert purge_expired(settings, now=NOW).deleted == 0


def test_artifacts_go_with_their_jobs_and_only_inside_the_store(
    settings: Settings, db_url: str, tmp_path: Path
) -> None:
    store = settings.resolved_model_store
    (store / "runs" / "expired" / "weights").mkdir(parents=True)
    (store / "runs" / "expired" / "weights" / "model.safetensors").write_bytes(b"w")
    (store / "runs" / "kept").mkdir(parents=True)
    (store / "single.bin").write_bytes(b"s")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (store / "escape").symlink_to(outside)
    with Session(get_engine(db_url)) as session, session.begin():
        old = DAY * 2
        aged_job(session, State.SUCCEEDED, age=old, result={"artifact": "runs/expired"}, now=NOW)
        # A job that failed midway names its files in its progress.
        progress = {"step": 3, "artifact": str(store / "single.bin")}
        aged_job(session, State.FAILED, age=4 * DAY, progress=progress, now=NOW)
        aged_job(session, State.SUCCEEDED, age=old, result={"artifact": "../precious"}, now=NOW)
        aged_job(session, State.SUCCEEDED, age=old, result={"artifact": str(outside)}, now=NOW)
        aged_job(session, State.SUCCEEDED, age=old, result={"artifact": "escape"}, now=NOW)
        aged_job(session, State.SUCCEEDED, age=old, result={"artifact": "."}, now=NOW)
        aged_job(
            session, State.SUCCEEDED, age=old, result={"artifact": "runs/never-written"}, now=NOW
        )
        kept = aged_job(
            session,
            State.SUCCEEDED,
            age=timedelta(hours=1),
            result={"artifact": "runs/kept"},
            now=NOW,
        )
    purge = purge_expired(settings, now=NOW)
    assert purge.deleted == 7 and _ids(db_url) == {kept}
    assert sorted(purge.artifacts) == [store / "runs/expired", store / "single.bin"]
    assert sorted(purge.refused) == sorted(["../precious", str(outside), "escape", "."])
    assert not (store / "runs" / "expired").exists() and not (store / "single.bin").exists()
    assert (store / "runs" / "kept").is_dir() and store.is_dir()
    assert (outside / "data.txt").read_text() == "keep me" and (store / "escape").is_symlink()


def test_large_backlogs_are_deleted_in_batches(settings: Settings, db_url: str) -> None:
    with Session(get_engine(db_url)) as session, session.begin():
        for _ in range(7):
            aged_job(session, State.SUCCEEDED, age=2 * DAY, now=NOW)
        young = aged_job(session, State.SUCCEEDED, age=timedelta(0), now=NOW)
    assert purge_expired(settings, now=NOW, batch=3).deleted == 7
    assert _ids(db_url) == {young}


def test_stale_running_jobs_are_failed(settings: Settings, db_url: str) -> None:
    with Session(get_engine(db_url)) as session, session.begin():
        silent = aged_job(
            session, State.RUNNING, age=settings.heartbeat_timeout + timedelta(seconds=1), now=NOW
        )
        alive = aged_job(
            session, State.RUNNING, age=settings.heartbeat_timeout - timedelta(seconds=1), now=NOW
        )
    assert sweep_stale(settings, now=NOW) == [silent]
    with Session(get_engine(db_url)) as session:
        assert states.current(session, silent) is State.FAILED
        assert states.current(session, alive) is State.RUNNING


def test_workers_seen_are_recorded_and_the_long_silent_forgotten(
    settings: Settings, db_url: str
) -> None:
    assert record_workers(settings, lambda: ["a@h", "b@h"], now=NOW) == ["a@h", "b@h"]
    later = NOW + timedelta(days=2)
    record_workers(settings, lambda: ["b@h"], now=later)
    with Session(get_engine(db_url)) as session:
        seen = {w.name: (w.first_seen_at, w.last_seen_at) for w in repo.known_workers(session)}
    assert seen == {"a@h": (NOW, NOW), "b@h": (NOW, later)}
    record_workers(settings, lambda: [], now=NOW + settings.retain_workers + timedelta(days=1))
    with Session(get_engine(db_url)) as session:
        assert [w.name for w in repo.known_workers(session)] == ["b@h"]


def test_artifact_rules(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    assert artifact_of({"artifact": "a/b", "loss": 0.1}) == "a/b"
    assert artifact_of({"artifact": 3}) is None and artifact_of(["artifact"]) is None
    assert artifact_of({"artifact": "  "}) is None
    assert artifacts_of({"artifact": "a"}, {"artifact": "a", "step": 2}) == ["a"]
    assert artifacts_of(None, {"artifact": "b"}) == ["b"]
    assert inside_store(store, "a/../b") == (store / "b").resolve()
    assert inside_store(store, "a/../../b") is None
    assert remove_artifact(store, "missing") is Removal.ABSENT
    assert remove_artifact(store, "/etc") is Removal.REFUSED
