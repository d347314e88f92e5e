"""The worker's row writes in bulk: a group's claims and successes as a few statements,
each job keeping the guarantees it has alone (its own lease, BUSY for a live one,
CONFLICT for a mismatched message, cancel and superseded sorted out one by one)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, select
from sqlalchemy.engine.default import CACHE_HIT
from sqlalchemy.orm import Session

from services.worker.rows import Rows, _Claim, _End
from shared import states
from shared.attempts import Ending
from shared.db import repo
from shared.db.engine import get_engine, reset_engines, session_scope
from shared.db.models import JobAttempt
from shared.jobs import JobRequest, parse_job
from shared.settings import Settings
from shared.states import Outcome, State

LEASE = timedelta(seconds=30)


def _rows(db_url: str, tmp_path: Path, worker: str = "w1") -> Rows:
    settings = Settings(database_url=db_url, home=tmp_path / "home")
    return Rows(db_url, worker=worker, settings=settings, retry_seconds=0)


def _request(text: str) -> JobRequest:
    job = {"task": "text-classification", "model": "m", "inputs": text}
    return parse_job(job).with_id()


def _inserted(db_url: str, *texts: str) -> list[JobRequest]:
    requests = [_request(text) for text in texts]
    with session_scope(db_url) as session:
        repo.insert_jobs(session, requests, inline_limit=1024)
    return requests


class Statements:
    """Counts the statements a block sends through ``db_url``'s engine (``ping``: which one),
    noting for each whether it ran outside a transaction (autocommit: no BEGIN, no COMMIT),
    and keeping each as the driver got it, with its parameters (``sent``)."""

    def __init__(self, db_url: str, *, ping: bool = True) -> None:
        self.engine = get_engine(db_url, ping=ping)
        self.count = 0
        self.autocommit: list[bool] = []
        self.sent: list[tuple[str, Any]] = []

    def _count(
        self, conn: Connection, cursor: object, statement: str, parameters: Any, *rest: object
    ) -> None:
        self.count += 1
        driver = conn.connection.dbapi_connection  # psycopg has autocommit; sqlite3 (3.11) not
        self.autocommit.append(bool(getattr(driver, "autocommit", False)))
        self.sent.append((statement, parameters))

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def _claim_all(rows: Rows, db_url: str, requests: list[JobRequest]) -> list[states.Started]:
    claims = [_Claim(request, LEASE) for request in requests]
    with session_scope(db_url) as session:
        return rows._claim_many(session, claims)


def test_a_group_of_claims_starts_every_job_under_its_own_lease(
    db_url: str, tmp_path: Path
) -> None:
    requests = _inserted(db_url, *(f"text {i}" for i in range(20)))
    rows = _rows(db_url, tmp_path)
    with Statements(db_url) as statements:
        started = _claim_all(rows, db_url, requests)
    assert [s.outcome for s in started] == [Outcome.STARTED] * 20
    assert len({s.lease for s in started}) == 20 and all(s.attempt == 1 for s in started)
    assert statements.count <= 4  # identities, claim, attempt log (+ commit), not 5 per job
    with session_scope(db_url) as session:
        for request, s in zip(requests, started, strict=True):
            job = repo.get_job(session, request.id or "")
            assert job is not None and (job.state, job.lease, job.worker) == (
                "RUNNING",
                s.lease,
                "w1",
            )
        ids = [request.id for request in requests]
        query = select(JobAttempt.job_id, JobAttempt.lease).where(JobAttempt.job_id.in_(ids))
        logged = session.execute(query).all()
    assert sorted(logged) == sorted((r.id, s.lease) for r, s in zip(requests, started, strict=True))


def test_in_a_group_a_second_copy_is_busy_a_mismatch_conflicts_and_absent_rows_are_made(
    db_url: str, tmp_path: Path
) -> None:
    mine, other = _inserted(db_url, "mine", "other")
    foreign = _request("from a producer without the database")  # no row yet
    tampered = other.model_copy(update={"inputs": "not what the row holds"})
    rows = _rows(db_url, tmp_path)
    started = _claim_all(rows, db_url, [mine, mine, tampered, foreign])
    outcomes = [s.outcome for s in started]
    assert outcomes == [Outcome.STARTED, Outcome.BUSY, Outcome.CONFLICT, Outcome.STARTED]
    with session_scope(db_url) as session:
        assert states.current(session, other.id or "") is State.QUEUED  # left as it was
        assert states.current(session, foreign.id or "") is State.RUNNING


def test_a_group_takes_over_a_silent_job_and_waits_on_a_live_one(
    db_url: str, tmp_path: Path
) -> None:
    silent, live = _inserted(db_url, "silent", "live")
    elsewhere = _rows(db_url, tmp_path, worker="w0")
    _claim_all(elsewhere, db_url, [silent, live])
    with session_scope(db_url) as session:
        old = repo.get_job(session, silent.id or "")
        assert old is not None
        old.heartbeat_at = old.heartbeat_at - 2 * LEASE  # type: ignore[operator]
    started = _claim_all(_rows(db_url, tmp_path), db_url, [silent, live])
    assert [(s.outcome, s.attempt) for s in started] == [(Outcome.STARTED, 2), (Outcome.BUSY, 0)]
    with session_scope(db_url) as session:
        endings = session.execute(
            select(JobAttempt.attempt, JobAttempt.outcome)
            .where(JobAttempt.job_id == silent.id)
            .order_by(JobAttempt.attempt)
        ).all()
    assert [tuple(row) for row in endings] == [(1, "lost"), (2, None)]


def test_a_group_of_successes_writes_each_result_once_and_sorts_out_the_rest(
    db_url: str, tmp_path: Path
) -> None:
    requests = _inserted(db_url, "a", "b", "cancelled", "lost")
    rows = _rows(db_url, tmp_path)
    started = _claim_all(rows, db_url, requests)
    leases = [s.lease for s in started]
    with session_scope(db_url) as session:
        states.cancel(session, requests[2].id or "")  # a cancel asked while it ran
    ends = [
        _End(request.id or "", lease, Ending.SUCCEEDED, result=[{"label": request.inputs}])
        for request, lease in zip(requests, leases, strict=True)
    ]
    ends[3] = _End(requests[3].id or "", "a lease it lost", Ending.SUCCEEDED, result=[])
    with session_scope(db_url) as session:
        answers = rows._succeed_many(session, ends)
    assert answers == ["SUCCEEDED", "SUCCEEDED", "CANCELLED", "RUNNING"]
    with session_scope(db_url) as session:
        jobs = [repo.get_job(session, request.id or "") for request in requests]
        assert [job.state for job in jobs if job] == [
            "SUCCEEDED",
            "SUCCEEDED",
            "CANCELLED",
            "RUNNING",
        ]
        assert [job.result for job in jobs[:2] if job] == [[{"label": "a"}], [{"label": "b"}]]
        query = select(JobAttempt.lease, JobAttempt.outcome)
        outcomes = {row.lease: row.outcome for row in session.execute(query)}
    assert [outcomes[lease] for lease in leases] == ["succeeded", "succeeded", "cancelled", None]


def test_succeed_many_needs_each_jobs_own_lease(session: Session) -> None:
    first, second = (_request(text) for text in ("x", "y"))
    repo.insert_jobs(session, [first, second], inline_limit=1024)
    leases = {first.id or "": "lease-1", second.id or "": "lease-2"}
    found = states.start_many(session, leases, worker="w")
    assert {job_id: s.lease for job_id, s in found.items()} == leases
    swapped = {first.id or "": ("lease-2", 1), second.id or "": ("lease-2", 2)}
    assert states.succeed_many(session, swapped) == {second.id}


def test_groups_of_every_size_share_a_few_statement_shapes(db_url: str) -> None:
    """Groups of 1 to 33 jobs compile one statement per power of two (SQLAlchemy's cache
    keeps the rest), and a padded group still writes exactly its own jobs, each its own
    result."""
    compiled: list[str] = []
    reset_engines()  # a fresh engine, with nothing compiled yet (as in a fresh worker)

    def seen(
        conn: object, cursor: object, statement: str, params: object, context: Any, *_: object
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and context.cache_hit != CACHE_HIT:
            compiled.append(statement)

    engine = get_engine(db_url)
    event.listen(engine, "after_cursor_execute", seen)
    try:
        for size in range(1, 34):
            group = [request.id or "" for request in _inserted(db_url, *["t"] * size)]
            leases = {job_id: str(uuid.uuid4()) for job_id in group}
            results = {job_id: (leases[job_id], [index]) for index, job_id in enumerate(group)}
            with session_scope(db_url) as session:
                assert set(states.start_many(session, leases, worker="w")) == set(group)
                assert states.succeed_many(session, results) == set(group)
            with session_scope(db_url) as session:
                stored = {job_id: repo.get_view(session, job_id) for job_id in group}
            assert {job_id: view.result for job_id, view in stored.items() if view} == {
                job_id: result for job_id, (_lease, result) in results.items()
            }
    finally:
        event.remove(engine, "after_cursor_execute", seen)
    assert len(compiled) == 2 * 7  # start_many and succeed_many; 1, 2, 4, ..., 64 WHENs
