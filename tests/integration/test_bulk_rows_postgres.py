"""The worker's bulk row writes on PostgreSQL, where a group's claims and its successes are
one statement each (``states.start_matching``, ``states.succeed_closing``): the unit tier's
tests again, on the real database, and what only the one-statement path could get wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from services.worker.rows import Rows, _Claim, _End
from shared.attempts import Ending
from shared.db import repo
from shared.db.engine import session_scope
from shared.db.models import JobAttempt
from shared.jobs import JobRequest, parse_job
from shared.settings import Settings
from shared.states import Outcome
from tests.unit import test_bulk_rows as unit
from tests.unit.test_bulk_rows import (  # noqa: F401 (collected here, on PostgreSQL)
    test_a_group_of_claims_starts_every_job_under_its_own_lease,
    test_a_group_of_successes_writes_each_result_once_and_sorts_out_the_rest,
    test_a_group_takes_over_a_silent_job_and_waits_on_a_live_one,
    test_groups_of_every_size_share_a_few_statement_shapes,
    test_in_a_group_a_second_copy_is_busy_a_mismatch_conflicts_and_absent_rows_are_made,
)


@pytest.fixture
def db_url(settings: Settings) -> str:
    return settings.resolved_database_url


def _request(text: str, params: dict[str, object]) -> JobRequest:
    """A job with ``params`` as given (nested values too: the comparison is what is tested)."""
    job = {"task": "text-classification", "model": "m", "inputs": text}
    return parse_job(job).with_id().model_copy(update={"params": params})


def _claim(rows: Rows, db_url: str, requests: list[JobRequest]) -> list[unit.states.Started]:
    with session_scope(db_url) as session:
        return rows._claim_many(session, [_Claim(request, unit.LEASE) for request in requests])


def test_a_group_is_claimed_and_succeeds_in_one_statement_each(db_url: str, tmp_path: Path) -> None:
    requests = unit._inserted(db_url, *(f"text {i}" for i in range(20)))
    rows = unit._rows(db_url, tmp_path)
    with unit.Statements(db_url) as claiming:
        started = _claim(rows, db_url, requests)
    ends = [
        _End(request.id or "", s.lease, Ending.SUCCEEDED, result={"n": index})
        for index, (request, s) in enumerate(zip(requests, started, strict=True))
    ]
    with unit.Statements(db_url) as succeeding, session_scope(db_url) as session:
        assert rows._succeed_many(session, ends) == ["SUCCEEDED"] * 20
    assert (claiming.count, succeeding.count) == (1, 1)
    with session_scope(db_url) as session:
        views = [repo.get_view(session, request.id or "") for request in requests]
        query = select(JobAttempt.outcome).where(JobAttempt.job_id.in_([r.id for r in requests]))
        outcomes = session.scalars(query).all()
    assert [view.result for view in views if view] == [{"n": index} for index in range(20)]
    assert outcomes == ["succeeded"] * 20


def test_parameters_must_match_the_row_as_json_not_as_text(db_url: str, tmp_path: Path) -> None:
    """The row's parameters are compared as JSON values: key order does not matter, a changed
    value does (that claim is a conflict, found the general way)."""
    params = {"top_k": 2, "options": {"b": [1, 2.5], "a": None}}
    same, changed = _request("same", params), _request("changed", params)
    with session_scope(db_url) as session:
        repo.insert_jobs(session, [same, changed], inline_limit=1024)
    reordered = same.model_copy(
        update={"params": {"options": {"a": None, "b": [1, 2.5]}, "top_k": 2}}
    )
    tampered = changed.model_copy(update={"params": {**params, "top_k": 3}})
    started = _claim(unit._rows(db_url, tmp_path), db_url, [reordered, tampered])
    assert [s.outcome for s in started] == [Outcome.STARTED, Outcome.CONFLICT]


def test_a_success_keeps_progress_and_a_null_result(db_url: str, tmp_path: Path) -> None:
    first, second = unit._inserted(db_url, "with progress", "without")
    rows = unit._rows(db_url, tmp_path)
    started = _claim(rows, db_url, [first, second])
    with session_scope(db_url) as session:  # progress a heartbeat wrote earlier
        unit.states.heartbeat(session, second.id or "", progress={"step": 1})
    ends = [
        _End(first.id or "", started[0].lease, Ending.SUCCEEDED, result=None, progress={"s": 9}),
        _End(second.id or "", started[1].lease, Ending.SUCCEEDED, result=[]),
    ]
    with session_scope(db_url) as session:
        assert rows._succeed_many(session, ends) == ["SUCCEEDED", "SUCCEEDED"]
    with session_scope(db_url) as session:
        views = [repo.get_view(session, job.id or "") for job in (first, second)]
    assert [(v.result, v.progress) for v in views if v] == [(None, {"s": 9}), ([], {"step": 1})]


def _direct_sent(rows: Rows, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first word of each statement ``rows`` sends straight through psycopg (its
    ``Direct``), as it sends them (to the real database)."""
    assert rows.direct is not None
    sent: list[str] = []
    execute = rows.direct.execute

    def counted(statement: Any, params: Any = None) -> list[Any]:
        sent.append(str(statement).split(None, 1)[0])
        return execute(statement, params)

    monkeypatch.setattr(rows.direct, "execute", counted)
    return sent


def test_a_lone_claim_and_success_are_one_statement_each_outside_a_transaction(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each goes straight through psycopg, nothing through SQLAlchemy's engine."""
    (request,) = unit._inserted(db_url, "alone")
    rows = unit._rows(db_url, tmp_path)
    sent = _direct_sent(rows, monkeypatch)
    with unit.Statements(db_url, ping=False) as claiming:
        started = rows.claim(request, stale_after=unit.LEASE)
    with unit.Statements(db_url, ping=False) as succeeding:
        state = rows.finish(request.id or "", started.lease, Ending.SUCCEEDED, result=[1])
    assert (started.outcome, state) == (Outcome.STARTED, "SUCCEEDED")
    assert sent == ["WITH", "WITH"]
    assert (claiming.count, succeeding.count) == (0, 0)
    with session_scope(db_url) as session:
        view = repo.get_view(session, request.id or "")
        attempts = session.scalars(
            select(JobAttempt.outcome).where(JobAttempt.lease == started.lease)
        )
        assert view is not None and (view.state, view.result) == ("SUCCEEDED", [1])
        assert attempts.all() == ["succeeded"]


def test_a_lone_write_the_one_statement_cannot_make_goes_the_general_way(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No row yet (a producer without the database), a cancel asked while it ran: the one
    statement writes nothing, and the general write, in a transaction, sorts it out."""
    foreign = unit._request("from a producer without the database")
    rows = unit._rows(db_url, tmp_path)
    sent = _direct_sent(rows, monkeypatch)
    with unit.Statements(db_url, ping=False) as claiming:
        started = rows.claim(foreign, stale_after=unit.LEASE)
    assert started.outcome is Outcome.STARTED
    assert sent == ["WITH"]
    assert claiming.autocommit and not any(claiming.autocommit)
    with session_scope(db_url) as session:
        unit.states.cancel(session, foreign.id or "")
    with unit.Statements(db_url, ping=False) as succeeding:
        state = rows.finish(foreign.id or "", started.lease, Ending.SUCCEEDED, result=[1])
    assert state == "CANCELLED"
    assert sent == ["WITH", "WITH"]
    assert succeeding.autocommit and not any(succeeding.autocommit)


def _plans(statements: unit.Statements) -> list[str]:
    """The plans of the one-statement writes (those starting ``WITH``) among ``statements``,
    from EXPLAIN on the parameters they were sent with (rolled back)."""
    found = []
    with statements.engine.connect() as conn:
        for statement, parameters in statements.sent:
            if statement.lstrip().startswith("WITH"):
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)
                found.append("\n".join(row[0] for row in rows))
        conn.rollback()
    return found


def test_a_group_finds_its_rows_by_key_even_where_the_state_index_looks_narrower(
    db_url: str, tmp_path: Path
) -> None:
    """After a burst, the state index holds an entry for every version a job had (QUEUED,
    RUNNING, ...) until vacuum, and statistics taken when few jobs were queued make
    ``state = 'QUEUED'`` look rarer than the group's ids: the planner then scanned the state
    index, dead entries and all, for every claim. The claim and the success must look their
    rows up by primary key only."""
    filler = "pipeq-test-finished"
    with session_scope(db_url) as session:
        session.execute(
            text(
                "INSERT INTO jobs (id, task, model, queue, state, priority, inputs_digest,"
                " inputs_bytes, params, attempts, cancel_requested, created_at, updated_at)"
                " SELECT :filler || '-' || n, 'text-classification', 'm', 'nlp', 'SUCCEEDED',"
                " 0, 'd', 0, '{}', 1, false, now(), now() FROM generate_series(1, 5000) AS n"
            ),
            {"filler": filler},
        )
    try:
        with session_scope(db_url) as session:
            session.execute(text("ANALYZE jobs"))
        requests = unit._inserted(db_url, *(f"text {i}" for i in range(32)))
        rows = unit._rows(db_url, tmp_path)
        with unit.Statements(db_url) as claiming:
            started = _claim(rows, db_url, requests)
        ends = [
            _End(request.id or "", s.lease, Ending.SUCCEEDED, result=[])
            for request, s in zip(requests, started, strict=True)
        ]
        with unit.Statements(db_url) as succeeding, session_scope(db_url) as session:
            assert rows._succeed_many(session, ends) == ["SUCCEEDED"] * 32
        plans = _plans(claiming) + _plans(succeeding)
        assert len(plans) == 2
        for plan in plans:
            assert "on jobs_pkey" in plan, plan
            assert "ix_jobs_state" not in plan, plan
    finally:
        with session_scope(db_url) as session:
            session.execute(text("DELETE FROM jobs WHERE id LIKE :f"), {"f": filler + "-%"})


def test_the_job_tables_are_vacuumed_after_a_few_hundred_dead_rows(db_url: str) -> None:
    """Migration 0006: autovacuum visits ``jobs`` and ``job_attempts`` once 1% of their rows
    (plus 500) are dead, not PostgreSQL's default fifth."""
    with session_scope(db_url) as session:
        options = dict(
            session.execute(
                text(
                    "SELECT relname, reloptions FROM pg_class"
                    " WHERE relname IN ('jobs', 'job_attempts')"
                )
            ).all()
        )
    for table in ("jobs", "job_attempts"):
        assert "autovacuum_vacuum_scale_factor=0.01" in options[table], options
        assert "autovacuum_vacuum_threshold=500" in options[table], options
