"""The stop flag of a running job, and the supervisor that sets it: cancel, time limit, lease."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from services.worker.control import JobControl, Superseded, current, running
from services.worker.supervisor import Supervisor
from shared import attempts, states
from shared.db import repo
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.errors import JobCancelled, JobTimeout
from shared.jobs import parse_job
from shared.states import State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _running_job(db_url: str, worker: str = "w") -> JobControl:
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"}).with_id()
    job_id = request.id or ""
    with session_scope(db_url) as session:
        repo.insert_job(session, request, inline_limit=1024)
        started = states.start(session, job_id, worker=worker)
        lease = started.lease or ""
        attempts.open_attempt(session, job_id=job_id, lease=lease, attempt=1, worker=worker)
    return JobControl(job_id, lease, time_limit=None)


def _row(db_url: str, job_id: str) -> tuple[str, str | None, object]:
    with session_scope(db_url) as session:
        job = repo.get_job(session, job_id)
        assert job is not None
        return job.state, job.error_type, job.heartbeat_at


def test_the_first_stop_reason_wins_and_check_raises_it() -> None:
    control = JobControl("j", "l")
    control.check()
    assert control.stop(JobCancelled("cancelled by user"))
    assert not control.stop(Superseded("late"))
    with pytest.raises(JobCancelled):
        control.check()


def test_a_deadline_stops_the_job_at_its_next_check() -> None:
    clock = Clock()
    control = JobControl("j", "l", time_limit=5, clock=clock)
    clock.now += 4.9
    control.check()
    clock.now += 0.2
    with pytest.raises(JobTimeout, match="time limit of 5 s"):
        control.check()


def test_a_cooperative_sleep_wakes_when_stopped() -> None:
    control = JobControl("j", "l")
    threading.Timer(0.1, control.stop, [JobCancelled("cancelled by user")]).start()
    began = time.monotonic()
    with pytest.raises(JobCancelled):
        control.sleep(30)
    assert time.monotonic() - began < 5


def test_current_is_the_running_jobs_control_and_a_harmless_one_outside() -> None:
    outside = current()
    assert not outside.stop(JobCancelled("x")) and not outside.stopping
    control = JobControl("j", "l")
    with running(control):
        assert current() is control
    assert current() is not control


def test_heartbeats_are_stamped_under_the_lease(db_url: str) -> None:
    control = _running_job(db_url)
    before = _row(db_url, control.job_id)[2]
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=0.001)
    with supervisor.holding(control):
        time.sleep(0.01)
        control.report({"step": 3})
        supervisor.tick()
    state, _, after = _row(db_url, control.job_id)
    assert state == "RUNNING" and after is not None and before is not None and after > before
    with session_scope(db_url) as fresh:
        job = repo.get_job(fresh, control.job_id)
        assert job is not None and job.progress == {"step": 3}
    assert not control.stopping


def test_a_cancel_request_stops_the_running_job(db_url: str) -> None:
    control = _running_job(db_url)
    with session_scope(db_url) as session:
        assert states.cancel(session, control.job_id) is State.RUNNING
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=10)
    with supervisor.holding(control):
        supervisor.tick()
    with pytest.raises(JobCancelled):
        control.check()


def test_the_watchdog_fails_an_overdue_job_at_once(db_url: str) -> None:
    clock = Clock()
    control = _running_job(db_url)
    control = JobControl(control.job_id, control.lease, time_limit=2, clock=clock)
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=10, clock=clock)
    with supervisor.holding(control):
        supervisor.tick()
        assert _row(db_url, control.job_id)[0] == "RUNNING"
        clock.now += 3
        supervisor.tick()  # the job's thread has not checked: the row is failed anyway
        assert _row(db_url, control.job_id)[:2] == ("FAILED", "timeout")
    with session_scope(db_url) as session:
        assert [a.outcome for a in attempts.of_job(session, control.job_id)] == ["timeout"]
        # A late success of the timed-out attempt is discarded.
        assert not states.succeed(session, control.job_id, "late", lease=control.lease)
    with pytest.raises(JobTimeout):
        control.check()


def test_a_job_taken_over_elsewhere_is_superseded(db_url: str) -> None:
    control = _running_job(db_url, worker="w1")
    with session_scope(db_url) as session:
        later = utcnow() + timedelta(minutes=5)
        again = states.start(
            session, control.job_id, worker="w2", stale_after=timedelta(seconds=30), now=later
        )
        assert again.lease and again.lease != control.lease
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=0.001)
    with supervisor.holding(control):
        supervisor.tick()
    with pytest.raises(Superseded, match="another attempt"):
        control.check()
    assert supervisor.held == []


def test_the_thread_runs_and_stops(db_url: str) -> None:
    control = _running_job(db_url)
    with session_scope(db_url) as session:
        states.cancel(session, control.job_id)
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=0.05).start()
    try:
        with supervisor.holding(control):
            deadline = time.monotonic() + 10
            while not control.stopping and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        supervisor.close()
    assert isinstance(control.reason, JobCancelled)


def test_a_job_done_in_time_is_not_timed_out_while_its_outcome_is_written() -> None:
    clock = Clock()
    control = JobControl("j", "l", time_limit=2, clock=clock)
    clock.now += 1
    control.finish()
    clock.now += 60  # the database was away all this while
    assert not control.overdue() and not control.stopping
    control.check()
