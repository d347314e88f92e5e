"""Leases and the attempt log: a live job is never run twice, a dead one is taken over."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from shared import attempts, states
from shared.attempts import Ending
from shared.db import repo
from shared.db.models import utcnow
from shared.jobs import parse_job
from shared.states import Outcome, State

LEASE = timedelta(seconds=30)


def _job(session: Session) -> str:
    request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"}).with_id()
    repo.insert_job(session, request, inline_limit=1024)
    return request.id or ""


def _claim(session: Session, job_id: str, worker: str, **kwargs: object) -> states.Started:
    started = states.start(
        session,
        job_id,
        worker=worker,
        stale_after=LEASE,
        **kwargs,  # type: ignore[arg-type]
    )
    if started.outcome is Outcome.STARTED and started.lease:
        attempts.open_attempt(
            session, job_id=job_id, lease=started.lease, attempt=started.attempt, worker=worker
        )
    return started


def test_a_live_lease_makes_a_second_claim_wait(session: Session) -> None:
    job_id = _job(session)
    first = _claim(session, job_id, "w1")
    assert first.outcome is Outcome.STARTED and first.lease
    second = _claim(session, job_id, "w2")
    assert second.outcome is Outcome.BUSY and second.lease is None
    job = repo.get_job(session, job_id)
    assert job is not None
    session.refresh(job)
    assert (job.worker, job.lease, job.attempts) == ("w1", first.lease, 1)


def test_a_silent_lease_is_taken_over_and_the_old_attempt_is_lost(session: Session) -> None:
    job_id = _job(session)
    first = _claim(session, job_id, "w1")
    later = utcnow() + LEASE + timedelta(seconds=1)
    second = _claim(session, job_id, "w2", now=later)
    assert second.outcome is Outcome.STARTED and second.attempt == 2
    assert second.lease != first.lease
    # The first attempt's late writes touch nothing: the job is not its own.
    assert not states.heartbeat(session, job_id, lease=first.lease)
    assert not states.succeed(session, job_id, "late", lease=first.lease or "")
    assert states.succeed(session, job_id, "fresh", lease=second.lease)
    ended = {a.attempt: a.outcome for a in attempts.of_job(session, job_id)}
    assert ended == {1: Ending.LOST.value, 2: None}


def test_heartbeats_keep_a_lease_alive(session: Session) -> None:
    job_id = _job(session)
    first = _claim(session, job_id, "w1")
    later = utcnow() + LEASE + timedelta(seconds=5)
    assert states.heartbeat(session, job_id, lease=first.lease, at=later - timedelta(seconds=1))
    assert _claim(session, job_id, "w2", now=later).outcome is Outcome.BUSY


def test_terminal_writes_need_the_lease(session: Session) -> None:
    job_id = _job(session)
    first = _claim(session, job_id, "w1")
    assert not states.fail(session, job_id, error_type="x", message="m", lease="someone-else")
    assert not states.finish_cancelled(session, job_id, lease="someone-else")
    assert states.current(session, job_id) is State.RUNNING
    assert states.fail(session, job_id, error_type="x", message="m", lease=first.lease)
    assert _claim(session, job_id, "w2").outcome is Outcome.FINISHED


def test_holdings_report_state_lease_and_cancel(session: Session) -> None:
    running, queued = _job(session), _job(session)
    lease = _claim(session, running, "w").lease
    states.cancel(session, running)
    found = states.holdings(session, [running, queued, "missing"])
    assert set(found) == {running, queued}
    assert found[running] == states.Holding(State.RUNNING, lease, True)
    assert found[queued].state is State.QUEUED and not found[queued].cancel_requested
    assert states.holdings(session, []) == {}


def test_attempt_endings_are_written_once(session: Session) -> None:
    job_id = _job(session)
    lease = _claim(session, job_id, "w").lease or ""
    assert attempts.close(session, lease, Ending.TIMEOUT)
    assert not attempts.close(session, lease, Ending.SUCCEEDED)
    assert [a.outcome for a in attempts.of_job(session, job_id)] == ["timeout"]


def test_completed_counts_count_only_attempts_that_ran_to_the_end(session: Session) -> None:
    once, twice, lost = _job(session), _job(session), _job(session)
    attempts.close(session, _claim(session, once, "w").lease or "", Ending.SUCCEEDED)
    attempts.close(session, _claim(session, twice, "w1").lease or "", Ending.SUPERSEDED)
    later = _claim(session, twice, "w2", now=utcnow() + 2 * LEASE).lease or ""
    attempts.close(session, later, Ending.SUCCEEDED)
    _claim(session, lost, "w1")
    _claim(session, lost, "w2", now=utcnow() + 2 * LEASE)
    counts = attempts.completed_counts(session)
    assert counts == {once: 1, twice: 2}
