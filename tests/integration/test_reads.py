"""Reads of one query (the gateway's, Client.get) and the statements sent straight through psycopg
(``shared/db/direct.py``) survive their PostgreSQL connection being cut; errors read as pipeq's."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, make_url, text

from shared import states
from shared.client import READS_NAME, Client
from shared.db import direct as direct_module
from shared.db import repo
from shared.db.direct import Direct, direct
from shared.db.engine import session_scope
from shared.db.reads import APPLICATION_NAME, Reader
from shared.errors import DatabaseUnavailable, SchemaMissing
from shared.jobs import parse_job
from shared.settings import Settings

BACKEND = text("SELECT pg_backend_pid()")


def _terminate(database_url: str, pid: int) -> str:
    """End one server process (and wait for it), as a restart would; its application name."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = connection.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            ).scalar_one()
            assert connection.execute(
                text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
            ).scalar_one()
    finally:
        admin.dispose()
    return str(name)


def test_a_read_on_a_dead_connection_is_retried_on_a_fresh_one(settings: Settings) -> None:
    reader = Reader(settings.resolved_database_url)
    try:
        first = reader.read(lambda session: session.connection().execute(BACKEND).scalar_one())
        assert _terminate(settings.resolved_database_url, first) == APPLICATION_NAME
        second = reader.read(lambda session: session.connection().execute(BACKEND).scalar_one())
        assert second != first  # answered, on a new connection
    finally:
        reader.engine.dispose()


def test_client_get_reads_straight_through_psycopg_and_survives_a_cut(
    settings: Settings, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = client.submit("text-classification", "tiny-text-classification", "read me")
    url = settings.resolved_database_url
    reads = direct(url, READS_NAME)
    assert reads is not None
    sent: list[object] = []
    execute = reads.execute
    monkeypatch.setattr(reads, "execute", lambda *args: sent.append(args) or execute(*args))
    assert client.get(job.id).id == job.id
    assert len(sent) == 1  # one statement, on the client's own psycopg connections
    (pid,) = reads.execute(BACKEND)[0]
    assert _terminate(url, pid) == READS_NAME  # the connection Client.get just used
    assert client.get(job.id).id == job.id  # answered on a fresh one


def test_a_direct_statement_on_a_dead_connection_is_retried_on_a_fresh_one(
    settings: Settings,
) -> None:
    fast = Direct(settings.resolved_database_url)
    try:
        (first,) = fast.execute(BACKEND)[0]
        assert _terminate(settings.resolved_database_url, first) == direct_module.APPLICATION_NAME
        (second,) = fast.execute(BACKEND)[0]
        assert second != first  # answered, on a new connection
    finally:
        fast.close()


def test_direct_errors_read_as_pipeqs(settings: Settings) -> None:
    url = settings.resolved_database_url
    fast = Direct(url)
    try:
        with pytest.raises(SchemaMissing, match="no table 'no_such_table'"):
            fast.execute(text("SELECT * FROM no_such_table"))
        assert fast.execute(text("SELECT 1 AS one"))[0].one == 1  # the connection goes on
    finally:
        fast.close()
    away = Direct(make_url(url).set(host="127.0.0.1", port=1).render_as_string(False))
    with pytest.raises(DatabaseUnavailable, match="database unavailable"):
        away.execute(text("SELECT 1"))


def test_direct_connections_in_use_are_bounded_and_a_caller_beyond_waits_then_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_module, "OPEN_MOST", 1)
    monkeypatch.setattr(direct_module, "WAIT_SECONDS", 0.3)
    fast = Direct(settings.resolved_database_url)
    slow = threading.Thread(target=fast.execute, args=(text("SELECT pg_sleep(1.5)"),))
    try:
        slow.start()
        time.sleep(0.3)  # the one connection is busy sleeping
        with pytest.raises(DatabaseUnavailable, match="no database connection free"):
            fast.execute(text("SELECT 1"))
        slow.join()
        assert fast.execute(text("SELECT 1 AS one"))[0].one == 1  # its slot came back
    finally:
        slow.join()
        fast.close()


def test_a_view_read_straight_through_psycopg_is_the_sessions(settings: Settings) -> None:
    """The same job, finished with a result, progress and an error, read both ways."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        ended = []
        for outcome in ("succeed", "fail"):
            request = parse_job({"task": "text-classification", "model": "m", "inputs": "x"})
            (job,) = repo.insert_jobs(session, [request.with_id()], inline_limit=1024)
            states.start(session, job.id, worker="w")
            states.heartbeat(session, job.id, progress={"step": 2})
            if outcome == "succeed":
                states.succeed(session, job.id, [{"label": "a", "score": 0.5}])
            else:
                states.fail(session, job.id, error_type="model_failure", message="boom")
            ended.append(job.id)
    fast = Direct(url)
    try:
        for job_id in ended:
            with session_scope(url) as session:
                slow = repo.get_view(session, job_id)
            assert slow is not None and repo.get_view(fast, job_id) == slow
        assert repo.get_view(fast, "no-such-job") is None
    finally:
        fast.close()
