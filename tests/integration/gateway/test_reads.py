"""The gateway's read path survives its PostgreSQL connection being cut."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from services.gateway.reads import APPLICATION_NAME, Reader
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
