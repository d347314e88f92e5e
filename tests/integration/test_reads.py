"""Reads of one query (the gateway's, Client.get) survive their PostgreSQL connection being cut."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from shared.client import READS_NAME, Client
from shared.db.reads import APPLICATION_NAME, Reader, reader
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


def test_client_get_reads_without_a_transaction_and_survives_a_cut(
    settings: Settings, client: Client
) -> None:
    job = client.submit("text-classification", "tiny-text-classification", "read me")
    url = settings.resolved_database_url
    reads = reader(url, READS_NAME)
    assert client.get(job.id).id == job.id
    pid = reads.read(lambda session: session.connection().execute(BACKEND).scalar_one())
    assert _terminate(url, pid) == READS_NAME  # the connection Client.get just used
    assert client.get(job.id).id == job.id  # answered on a fresh one
