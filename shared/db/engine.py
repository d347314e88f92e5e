"""Engines and sessions: one engine per database URL (and choice of ping) per process.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so
that a producer process and a worker process can share the file. PostgreSQL
connections are checked before use, so a restarted server costs one retry,
not a crashed worker; code that retries its writes itself while the database is
away (the worker's row writes) asks for ``ping=False`` and saves that round trip
on every transaction (a connection the server dropped then fails one attempt, is
discarded with the rest of the pool, and the retry gets a fresh one).
:func:`session_scope` is the unit of work: callers own the transaction, repository
functions never commit (``shared/db/reads.py`` has the reads of one query, outside any
transaction; ``shared/db/direct.py`` the single statements a lone job waits on, sent straight
through psycopg on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import translating
from shared.settings import get_settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str | None = None, *, ping: bool = True) -> Engine:
    """The process's engine for ``url`` (default: the settings' database); ``ping``: check
    each PostgreSQL connection as it leaves the pool."""
    url = url or get_settings().resolved_database_url
    return _engine(url, ping or url.startswith("sqlite"))  # SQLite: one engine, nothing to ping


@functools.cache
def _engine(url: str, ping: bool) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=ping, pool_size=10, max_overflow=20)


@functools.cache
def _factory(url: str | None, ping: bool, autocommit: bool) -> sessionmaker[Session]:
    engine = get_engine(url, ping=ping)
    if autocommit and engine.dialect.name == "postgresql":  # the same pool, no BEGIN/COMMIT
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(
    url: str | None = None, *, ping: bool = True, autocommit: bool = False
) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error.

    Database errors leave as :class:`shared.errors.DatabaseUnavailable` (transient)
    or as they were (a bug). ``ping=False``: for a caller that retries on that error
    (see the module's docstring). ``autocommit=True``: on PostgreSQL each statement
    commits by itself, saving the BEGIN and COMMIT round trips; only for a block of one
    statement (or of statements that need not stand or fall together).
    """
    with translating("database"):
        session = _factory(url, ping, autocommit)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def reset_engines() -> None:
    """Forget every engine (tests that switch databases, processes after fork)."""
    from shared.db import direct, reads

    for factory in (_factory, _engine, reads.reader, direct.direct):
        factory.cache_clear()
