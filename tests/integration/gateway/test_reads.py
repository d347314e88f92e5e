"""The gateway's read path survives its PostgreSQL connections being cut."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from services.gateway.reads import APPLICATION_NAME, Reader
from shared.settings import Settings


def _cut_reader_connections(database_url: str) -> int:
    """Terminate this database's gateway read connections, as a PostgreSQL restart would."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            cut = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": APPLICATION_NAME},
            ).scalar_one()
    finally:
        admin.dispose()
    return int(cut)


def test_a_read_on_a_dead_connection_is_retried_on_a_fresh_one(settings: Settings) -> None:
    reader = Reader(settings.resolved_database_url)
    backend = "SELECT pg_backend_pid()"
    try:
        first = reader.read(lambda session: session.connection().execute(text(backend)).scalar())
        assert _cut_reader_connections(settings.resolved_database_url) == 1
        second = reader.read(lambda session: session.connection().execute(text(backend)).scalar())
        assert second != first  # answered, on a new connection
    finally:
        reader.engine.dispose()
