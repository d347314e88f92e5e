"""Beat's tick, driven through chosen moments: runs, missed runs, recovery, sleeping.

The database is a real SQLite file and the broker kombu's filesystem transport
(no servers); only the clock and the worker pinger are passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from services.beat.loop import Beat
from shared.cadence import Cadence
from shared.client import Client
from shared.db import schedules as schedules_repo
from shared.db.engine import get_engine
from shared.db.models import Job, Schedule
from shared.jobs import parse_job
from shared.schedules import add, find, pause, resume, run_request
from shared.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB = parse_job({"task": "text-classification", "model": "tiny", "inputs": "hello"})


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, home=tmp_path / "home", beat_poll_interval=timedelta(seconds=2)
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def beat(settings: Settings, clock: Clock) -> Iterator[Beat]:
    yield Beat(settings, client=Client(settings), clock=clock, pinger=lambda: ["w1@host"])


def _add_every(db_url: str, name: str, every: timedelta, now: datetime) -> None:
    with Session(get_engine(db_url)) as session, session.begin():
        add(session, name=name, cadence=Cadence(every=every), job=JOB, now=now)


def _schedule(db_url: str, name: str) -> Schedule:
    with Session(get_engine(db_url), expire_on_commit=False) as session:
        return find(session, name)


def _jobs(db_url: str) -> list[Job]:
    with Session(get_engine(db_url)) as session:
        return list(session.query(Job).order_by(Job.created_at))


def test_a_due_schedule_makes_one_linked_job(beat: Beat, clock: Clock, db_url: str) -> None:
    _add_every(db_url, "often", timedelta(minutes=10), T0)
    assert beat.tick().runs == []
    clock.now = T0 + timedelta(minutes=10)
    (run,) = beat.tick().runs
    assert run.error is None and run.recorded and run.slot == T0 + timedelta(minutes=10)
    (job,) = _jobs(db_url)
    schedule = _schedule(db_url, "often")
    assert (job.id, job.state, job.schedule_id) == (run.job_id, "QUEUED", schedule.id)
    assert job.inputs == "hello" and job.idempotency_key is not None
    assert schedule.runs == 1 and schedule.next_run_at == T0 + timedelta(minutes=20)
    assert beat.tick().runs == []


def test_runs_missed_while_beat_was_down_run_once(beat: Beat, clock: Clock, db_url: str) -> None:
    _add_every(db_url, "often", timedelta(minutes=10), T0)
    clock.now = T0 + timedelta(hours=3, minutes=5)  # 18 runs missed
    (run,) = beat.tick().runs
    assert run.slot == T0 + timedelta(minutes=10)  # the oldest missed run
    assert run.next_run_at == T0 + timedelta(hours=3, minutes=10)  # phase kept
    assert beat.tick().runs == []
    clock.now = T0 + timedelta(hours=3, minutes=10)
    assert len(beat.tick().runs) == 1
    assert len(_jobs(db_url)) == 2


def test_a_run_submitted_before_beat_stopped_is_not_sent_again(
    beat: Beat, clock: Clock, db_url: str, settings: Settings
) -> None:
    _add_every(db_url, "often", timedelta(minutes=10), T0)
    schedule = _schedule(db_url, "often")
    # Beat submitted the run, then died before recording it.
    earlier = Client(settings).submit_request(run_request(schedule, slot=schedule.next_run_at))
    clock.now = T0 + timedelta(minutes=30)
    (run,) = beat.tick().runs
    assert run.job_id == earlier.id and run.recorded
    (job,) = _jobs(db_url)
    assert job.schedule_id == schedule.id
    assert _schedule(db_url, "often").next_run_at == T0 + timedelta(minutes=40)


def test_a_template_that_no_longer_validates_is_recorded_and_skipped(
    beat: Beat, clock: Clock, db_url: str
) -> None:
    _add_every(db_url, "broken", timedelta(minutes=10), T0)
    with Session(get_engine(db_url)) as session, session.begin():
        session.execute(update(Schedule).values(params={"no_such_parameter": 1}))
    clock.now = T0 + timedelta(minutes=10)
    (run,) = beat.tick().runs
    assert run.job_id is None and run.error and "no_such_parameter" in run.error
    schedule = _schedule(db_url, "broken")
    assert schedule.last_error == run.error and schedule.runs == 1
    assert schedule.next_run_at == T0 + timedelta(minutes=20)
    assert _jobs(db_url) == []


def test_pause_and_resume_take_effect_at_the_next_tick(
    beat: Beat, clock: Clock, db_url: str
) -> None:
    _add_every(db_url, "often", timedelta(minutes=1), T0)
    with Session(get_engine(db_url)) as session, session.begin():
        pause(session, "often")
    clock.now = T0 + timedelta(minutes=5)
    assert beat.tick().runs == []
    with Session(get_engine(db_url)) as session, session.begin():
        resume(session, "often", now=clock.now)
    assert beat.tick().runs == []
    clock.now = T0 + timedelta(minutes=6)
    assert len(beat.tick().runs) == 1


def test_beat_sleeps_until_the_next_thing_due_or_the_poll_interval(
    beat: Beat, clock: Clock, db_url: str
) -> None:
    first = beat.tick()
    assert first.workers == ["w1@host"] and first.stale == []
    assert first.sleep == pytest.approx(2.0)  # nothing due sooner than the poll interval
    _add_every(db_url, "soon", timedelta(seconds=1), T0)
    assert beat.tick().sleep == pytest.approx(1.0)
    clock.now = T0 + timedelta(seconds=30)
    second = beat.tick()
    assert len(second.runs) == 1 and second.workers == ["w1@host"]  # ping interval is 30 s
    assert second.sleep == pytest.approx(1.0)


def test_two_due_schedules_each_run(beat: Beat, clock: Clock, db_url: str) -> None:
    _add_every(db_url, "a", timedelta(minutes=1), T0)
    _add_every(db_url, "b", timedelta(minutes=2), T0)
    clock.now = T0 + timedelta(minutes=2)
    assert sorted(run.schedule for run in beat.tick().runs) == ["a", "b"]
    with Session(get_engine(db_url)) as session:
        assert schedules_repo.next_due_at(session) == T0 + timedelta(minutes=3)
