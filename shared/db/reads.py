"""Reads of one query: no transaction, no ping, one round trip.

A job's status is the commonest read (every gateway status call, every
``Client.wait`` as the job ends), and on PostgreSQL the shared engine spends four
round trips on each (a liveness ping at checkout, BEGIN, the SELECT, COMMIT).
Reads here use an engine of their own, in autocommit and without the ping: one
round trip. A connection that died (PostgreSQL restarted) is noticed by the
failed query itself; SQLAlchemy then drops the whole pool, and
:meth:`Reader.read` runs the query once more on a fresh connection. Writes keep
the shared engine and its transactions; so do reads that must agree with each
other. SQLite (the embedded default) reads through the shared engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.db.engine import get_engine
from shared.errors import translating

T = TypeVar("T")

#: How these connections show in ``pg_stat_activity`` unless the caller names them.
APPLICATION_NAME = "pipeq-reads"


class Reader:
    """Read-only sessions for one database URL (see the module docstring)."""

    def __init__(self, url: str, *, application_name: str = APPLICATION_NAME) -> None:
        self.engine: Engine = (
            get_engine(url)
            if url.startswith("sqlite")
            else create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=10,
                max_overflow=20,
                pool_recycle=3600,
                connect_args={"application_name": application_name},
            )
        )

    def read(self, query: Callable[[Session], T]) -> T:
        """``query(session)``, retried once if its connection turned out to be dead."""
        with translating("database"):
            try:
                return self._once(query)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return self._once(query)

    def _once(self, query: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            return query(session)


@functools.cache
def reader(url: str, application_name: str = APPLICATION_NAME) -> Reader:
    """The process's :class:`Reader` for ``url`` (one pool, however many clients)."""
    return Reader(url, application_name=application_name)
