"""Schedules in the database: add, pause, resume, remove, and claiming a run once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from shared.cadence import Cadence
from shared.db import repo
from shared.db import schedules as schedules_repo
from shared.errors import InvalidSchedule, ScheduleNotFound
from shared.jobs import parse_job
from shared.schedules import add, find, list_all, pause, remove, resume, run_key, run_request

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB = parse_job(
    {"task": "text-classification", "model": "tiny", "inputs": ["a", "b"], "params": {"top_k": 2}}
)


def test_a_schedule_keeps_its_job_template_and_first_run(session: Session) -> None:
    view = add(session, name="nightly", cadence=Cadence(cron="0 3 * * *"), job=JOB, now=T0)
    assert (view.name, view.cadence, view.task, view.model) == (
        "nightly",
        "cron 0 3 * * *",
        "text-classification",
        "tiny",
    )
    assert view.next_run_at == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert not view.paused and view.runs == 0 and view.last_run_at is None
    row = find(session, "nightly")
    request = run_request(row, slot=row.next_run_at)
    assert request.inputs == ["a", "b"] and request.params == {"top_k": 2}
    assert request.idempotency_key == run_key(row.id, row.next_run_at)
    assert request.id is None


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 129, "semi;colon"])
def test_bad_names_are_refused(session: Session, name: str) -> None:
    with pytest.raises(InvalidSchedule):
        add(session, name=name, cadence=Cadence(cron="@daily"), job=JOB, now=T0)


def test_names_are_unique_and_runs_have_no_fixed_id(session: Session) -> None:
    add(session, name="once", cadence=Cadence(cron="@daily"), job=JOB, now=T0)
    with pytest.raises(InvalidSchedule, match="exists"):
        add(session, name="once", cadence=Cadence(cron="@hourly"), job=JOB, now=T0)
    keyed = JOB.model_copy(update={"idempotency_key": "k"})
    with pytest.raises(InvalidSchedule, match="idempotency"):
        add(session, name="keyed", cadence=Cadence(cron="@daily"), job=keyed, now=T0)
    assert [view.name for view in list_all(session)] == ["once"]


def test_paused_schedules_are_not_due_and_resume_skips_missed_runs(session: Session) -> None:
    every = Cadence(every=timedelta(minutes=10))
    add(session, name="a", cadence=every, job=JOB, now=T0)
    add(session, name="b", cadence=every, job=JOB, now=T0 + timedelta(minutes=1))
    later = T0 + timedelta(hours=2)
    assert [row.name for row in schedules_repo.due(session, now=later)] == ["a", "b"]
    assert pause(session, "a").paused
    assert [row.name for row in schedules_repo.due(session, now=later)] == ["b"]
    assert schedules_repo.next_due_at(session) == T0 + timedelta(minutes=11)
    resumed = resume(session, "a", now=later)
    assert not resumed.paused and resumed.next_run_at == later + timedelta(minutes=10)
    assert resume(session, "a", now=later + timedelta(hours=1)).next_run_at == resumed.next_run_at
    with pytest.raises(ScheduleNotFound):
        pause(session, "nope")


def test_a_run_is_claimed_once(session: Session) -> None:
    add(session, name="a", cadence=Cadence(every=timedelta(minutes=10)), job=JOB, now=T0)
    row = find(session, "a")
    slot, following = row.next_run_at, row.next_run_at + timedelta(minutes=10)
    job = repo.insert_job(session, JOB.with_id(), inline_limit=1024)
    claim = {"slot": slot, "next_run_at": following, "job_id": job.id, "error": None}
    assert schedules_repo.record_run(session, row.id, **claim)
    assert not schedules_repo.record_run(session, row.id, **claim)
    session.refresh(row)
    session.refresh(job)
    assert (row.runs, row.last_run_at, row.next_run_at) == (1, slot, following)
    assert row.last_job_id == job.id and job.schedule_id == row.id


def test_removing_a_schedule_keeps_its_jobs(session: Session) -> None:
    add(session, name="a", cadence=Cadence(cron="@daily"), job=JOB, now=T0)
    row = find(session, "a")
    job = repo.insert_job(session, JOB.with_id(), inline_limit=1024)
    schedules_repo.record_run(
        session,
        row.id,
        slot=row.next_run_at,
        next_run_at=T0 + timedelta(days=2),
        job_id=job.id,
        error=None,
    )
    remove(session, "a")
    session.expire_all()
    kept = repo.get_job(session, job.id)
    assert kept is not None and kept.schedule_id is None
    assert list_all(session) == []
    assert not schedules_repo.record_run(
        session, row.id, slot=T0, next_run_at=T0, job_id=None, error=None
    )
