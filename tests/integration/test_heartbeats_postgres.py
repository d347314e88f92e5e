"""A worker's heartbeats on PostgreSQL never wait for a row lock (``states.heartbeat_many``).

The worker's group commit writes a batch's successes in one statement that locks its rows in
its own order; the supervisor's heartbeats used to be one UPDATE per job in one transaction,
holding the locks taken so far while waiting for the next. The two deadlocked (seen in the
batching bench: one in every few 2,000-job bursts, each broken only after PostgreSQL's 1 s
deadlock timeout, the group rolled back and retried). A beat now skips a row that another
transaction holds; the supervisor stamps that job, progress and all, at its next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from services.worker.supervisor import Supervisor
from shared import states
from shared.db import repo
from shared.db.engine import get_engine, session_scope
from shared.errors import DatabaseUnavailable, TransactionRolledBack
from shared.settings import Settings
from tests.unit.test_supervisor import _running_job


@pytest.fixture
def db_url(settings: Settings) -> str:
    return settings.resolved_database_url


@contextmanager
def _locked(db_url: str, job_id: str) -> Iterator[None]:
    """``job_id``'s row locked by another transaction, as a group's success statement holds it
    until its commit."""
    with get_engine(db_url).connect() as holder:
        holder.execute(text("UPDATE jobs SET updated_at = now() WHERE id = :id"), {"id": job_id})
        try:
            yield
        finally:
            holder.rollback()


def _stamps(db_url: str, *job_ids: str) -> list[object]:
    with session_scope(db_url) as session:
        return [getattr(repo.get_job(session, job_id), "heartbeat_at", None) for job_id in job_ids]


def test_a_beat_skips_a_row_locked_elsewhere_instead_of_waiting(db_url: str) -> None:
    busy, free = _running_job(db_url), _running_job(db_url)
    before = _stamps(db_url, busy.job_id, free.job_id)
    with _locked(db_url, busy.job_id), session_scope(db_url) as session:
        # Per-job UPDATEs would wait here for the lock, and fail at this timeout.
        session.execute(text("SET LOCAL lock_timeout = '3s'"))
        beats = [states.Beat(c.job_id, c.lease, {"step": 1}) for c in (busy, free)]
        assert states.heartbeat_many(session, beats) == {free.job_id}
    after = _stamps(db_url, busy.job_id, free.job_id)
    assert after[0] == before[0]
    assert after[1] is not None and before[1] is not None and after[1] > before[1]


def test_a_beat_under_another_lease_or_of_a_finished_job_stamps_nothing(db_url: str) -> None:
    stolen, finished = _running_job(db_url), _running_job(db_url)
    with session_scope(db_url) as session:
        assert states.succeed(session, finished.job_id, "done", lease=finished.lease)
        beats = [
            states.Beat(stolen.job_id, "another lease"),
            states.Beat(finished.job_id, finished.lease),
        ]
        assert states.heartbeat_many(session, beats) == set()


def test_a_job_a_beat_skipped_is_stamped_at_the_next_poll_with_its_progress(db_url: str) -> None:
    control = _running_job(db_url)
    supervisor = Supervisor(db_url=db_url, heartbeat_seconds=60, poll_seconds=1)
    with supervisor.holding(control):
        control.report({"step": 7})
        before = _stamps(db_url, control.job_id)
        with _locked(db_url, control.job_id):
            supervisor.tick()  # the first tick beats; the row is locked: skipped
        assert _stamps(db_url, control.job_id) == before
        supervisor.tick()  # not a full beat for another minute, but this job's is owed
        after = _stamps(db_url, control.job_id)
        with session_scope(db_url) as session:
            job = repo.get_job(session, control.job_id)
            assert job is not None and job.progress == {"step": 7}
        supervisor.tick()  # owed no more: nothing written
        assert _stamps(db_url, control.job_id) == after
    assert after[0] is not None and before[0] is not None and after[0] > before[0]
    assert not control.stopping


def test_a_deadlock_the_database_breaks_reads_as_such_and_is_retried_like_an_outage(
    db_url: str,
) -> None:
    """Two transactions locking two rows in opposite orders: PostgreSQL rolls one back after
    its deadlock timeout (1 s). The loser sees what happened, not "database unavailable",
    and still gets the retry every DatabaseUnavailable gets."""
    first, second = _running_job(db_url), _running_job(db_url)
    both_hold_one = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def lock(one: str, other: str) -> None:
        update = text("UPDATE jobs SET updated_at = now() WHERE id = :id")
        try:
            with session_scope(db_url) as session:
                session.execute(update, {"id": one})
                both_hold_one.wait()
                session.execute(update, {"id": other})
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=lock, args=(first.job_id, second.job_id)),
        threading.Thread(target=lock, args=(second.job_id, first.job_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], TransactionRolledBack)
    assert isinstance(errors[0], DatabaseUnavailable)
    assert "rolled the transaction back (DeadlockDetected: deadlock detected)" in str(errors[0])
