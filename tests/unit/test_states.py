"""The state machine, on a real (SQLite) database made by the migrations."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy.orm import Session

from shared import states
from shared.db import repo
from shared.db.tenancy import get_owned
from shared.jobs import JobView, parse_job
from shared.states import SOURCES, TERMINAL, Outcome, State

TENANT = "acme"


def _job(session: Session, **overrides: object) -> str:
    raw = {"task": "text-classification", "model": "m", "inputs": "hi", **overrides}
    request = parse_job(raw).with_id()
    repo.insert_job(session, request, inline_limit=1024, tenant=TENANT)
    return request.id or ""


def test_happy_path(session: Session) -> None:
    job_id = _job(session)
    started = states.start(session, job_id, worker="w1")
    assert started.outcome is Outcome.STARTED and started.attempt == 1
    assert states.succeed(session, job_id, {"label": "POSITIVE"})
    job = repo.get_job(session, job_id)
    assert job is not None
    session.refresh(job)
    assert (job.state, job.result, job.worker, job.attempts) == (
        "SUCCEEDED",
        {"label": "POSITIVE"},
        "w1",
        1,
    )
    assert job.finished_at is not None and job.started_at is not None


def _finish(session: Session, job_id: str, terminal: State) -> bool:
    if terminal is State.SUCCEEDED:
        return states.succeed(session, job_id, 1)
    if terminal is State.FAILED:
        return states.fail(session, job_id, error_type="x", message="m")
    return states.finish_cancelled(session, job_id)


def test_terminal_states_are_never_left(session: Session) -> None:
    for terminal in TERMINAL:
        job_id = _job(session)
        states.start(session, job_id, worker="w")
        assert _finish(session, job_id, terminal)
        assert not states.succeed(session, job_id, "again")
        assert not states.fail(session, job_id, error_type="x", message="again")
        assert not states.finish_cancelled(session, job_id)
        assert not states.requeue(session, job_id, reason="r")
        assert states.cancel(session, job_id) == terminal
        assert states.start(session, job_id, worker="w2").outcome is Outcome.FINISHED
        assert states.current(session, job_id) == terminal


def test_redelivered_finished_job_is_not_started_again(session: Session) -> None:
    job_id = _job(session)
    states.start(session, job_id, worker="w1")
    states.succeed(session, job_id, [1])
    again = states.start(session, job_id, worker="w2")
    assert again.outcome is Outcome.FINISHED and again.state is State.SUCCEEDED
    job = repo.get_job(session, job_id)
    assert job is not None and job.attempts == 1 and job.worker == "w1"


def test_redelivery_of_a_running_job_counts_an_attempt(session: Session) -> None:
    job_id = _job(session)
    states.start(session, job_id, worker="w1")
    again = states.start(session, job_id, worker="w2")
    assert again.outcome is Outcome.STARTED and again.attempt == 2


def test_result_written_once(session: Session) -> None:
    job_id = _job(session)
    states.start(session, job_id, worker="w1")
    assert states.succeed(session, job_id, "first")
    assert not states.succeed(session, job_id, "second")
    job = repo.get_job(session, job_id)
    assert job is not None
    session.refresh(job)
    assert job.result == "first"


def test_cancel_queued_then_running(session: Session) -> None:
    queued = _job(session)
    assert states.cancel(session, queued) is State.CANCELLED
    assert states.start(session, queued, worker="w").outcome is Outcome.FINISHED

    running = _job(session)
    states.start(session, running, worker="w")
    assert not _shown(session, running).cancel_requested
    assert states.cancel(session, running) is State.RUNNING
    assert states.cancel_requested(session, running)
    assert _shown(session, running).cancel_requested  # what `pipeq status` and the gateway say
    assert states.finish_cancelled(session, running)
    assert states.current(session, running) is State.CANCELLED
    assert not _shown(session, running).cancel_requested
    assert states.cancel(session, "no-such-id") is None


def _shown(session: Session, job_id: str) -> JobView:
    """The job as the client and the gateway show it, which must agree."""
    session.expire_all()
    view = repo.get_view(session, job_id)
    assert view is not None
    assert get_owned(session, job_id, TENANT) == view
    return view


def test_start_of_a_missing_job(session: Session) -> None:
    assert states.start(session, "nope", worker="w").outcome is Outcome.MISSING


def test_transition_table_is_closed() -> None:
    for source, target in itertools.product(State, State):
        allowed = states.can_move(source, target)
        if source in TERMINAL:
            assert not allowed, f"{source} -> {target} leaves a terminal state"
    assert set(SOURCES) == set(State)


def test_only_from_must_be_a_transition(session: Session) -> None:
    with pytest.raises(ValueError):
        states.machine._move(session, "x", State.SUCCEEDED, only_from=State.QUEUED)


def test_not_queued_fails_only_a_queued_job_and_frees_its_key(session: Session) -> None:
    queued = _job(session, idempotency_key="never-sent")
    assert states.not_queued(session, queued, error_type="broker_refused", message="not queued")
    view = _shown(session, queued)
    assert view.state == "FAILED" and view.idempotency_key is None
    assert repo.find_by_idempotency_key(session, "never-sent") is None  # free for a retry

    running = _job(session, idempotency_key="sent-after-all")
    states.start(session, running, worker="w")  # a copy of its message got through
    assert not states.not_queued(session, running, error_type="x", message="not queued")
    view = _shown(session, running)
    assert view.state == "RUNNING" and view.idempotency_key == "sent-after-all"
