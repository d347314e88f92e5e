"""One statement on PostgreSQL, straight through psycopg: the statements a lone job waits on.

A lone job waits on three statements that each stand alone: its claim and its success in the
worker (``rows.py``, when no other write commits with them), and the client's read of its row
once its notice comes (``Client.get``). Through SQLAlchemy, each costs about 200 µs of CPU
besides the database's own work: a one-row ``SELECT`` took 238 µs of the caller's CPU through a
``Session``, 142-175 through a pooled ``Connection`` (the pool's checkout and return are most
of it), and 27 through psycopg on a connection it holds (this repository's 2-core host). In a
worker that has just run a forward pass, each of the two statements took 1.3-1.9 ms. Sent this
way, lone MiniLM jobs took 16.3-17.5 ms against 18.2-19.2 (100 jobs, three alternations with
the code before): from the success to the client's return 2.1-2.2 ms against 3.2-3.4, and
around the pass, between the claim and the success, 0.9-1.1 ms against 1.5-1.6.

:class:`Direct` keeps a few idle autocommit connections of its own, in a list, taken and given
back under a lock, opened when none is idle. Not SQLAlchemy's pool (its checkout and return
are the cost above), nor ``psycopg_pool`` (it starts maintenance threads in every process that
imports the client, for connections that need no maintenance). A connection that failed is
closed, not given back; a statement whose reused connection turns out dead (PostgreSQL
restarted meanwhile) drops every idle one and runs once more on a fresh connection, as
``reads.Reader`` does. Errors leave as SQLAlchemy's would (``DBAPIError.instance``), through
:func:`~shared.errors.translating`, so callers see pipeq's errors as for any other statement.

Statements are SQLAlchemy's (``text()`` or Core) made once, at import, and compiled once for
psycopg; rows come back as named tuples (``row.id``), as a Core row reads.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql import ClauseElement

from shared.errors import translating

#: Idle connections kept for the next statement; more are closed as they come back.
IDLE_MOST = 8
#: Connections in use at once, at most (as SQLAlchemy's pool here: 10 and 20 overflowing); a
#: caller beyond waits up to ``WAIT_SECONDS`` for one to come back, then gets
#: :class:`~shared.errors.DatabaseUnavailable`.
OPEN_MOST = 30
WAIT_SECONDS = 30.0

#: How these connections show in ``pg_stat_activity`` unless the caller names them.
APPLICATION_NAME = "pipeq-direct"

_DIALECT = postgresql.dialect(driver="psycopg")  # type: ignore[no-untyped-call]


class Direct:
    """Single statements on one PostgreSQL database, in autocommit (see the module)."""

    def __init__(self, url: str, *, application_name: str = APPLICATION_NAME) -> None:
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._application_name = application_name
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(OPEN_MOST)

    def execute(
        self, statement: ClauseElement, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Run ``statement`` (committed by itself) and return its rows, if it has any."""
        sql = _compiled(statement)
        with translating("database"):
            try:
                return self._attempt(sql, params)
            except psycopg.Error as exc:  # as SQLAlchemy would raise it, for ``translating``
                raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc

    def _attempt(self, sql: str, params: Mapping[str, Any] | None) -> list[Any]:
        connection, reused = self._take()
        try:
            rows = _run(connection, sql, params)
        except psycopg.OperationalError:
            self._close(connection)
            if not reused:
                raise
            self._drop_idle()  # a restarted server: every idle connection is dead too
            connection, _reused = self._take()
            try:
                rows = _run(connection, sql, params)
            except BaseException:
                self._close(connection)
                raise
        except psycopg.Error:  # the statement's fault, not the connection's
            self._give_back(connection)
            raise
        except BaseException:  # cut short (a Ctrl-C): the connection's state is unknown
            self._close(connection)
            raise
        self._give_back(connection)
        return rows

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        """An idle connection (True) or a new one (False), holding one of the open slots."""
        if not self._slots.acquire(timeout=WAIT_SECONDS):
            raise PoolTimeout(f"no database connection free within {WAIT_SECONDS:.0f} s")
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        try:
            connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                row_factory=namedtuple_row,
                application_name=self._application_name,
                connect_timeout=10,
            )
        except BaseException:
            self._slots.release()
            raise
        return connection, False

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._lock:
            if idle and not connection.closed and len(self._idle) < IDLE_MOST:
                self._idle.append(connection)
                self._slots.release()
                return
        self._close(connection)

    def _close(self, connection: psycopg.Connection[Any]) -> None:
        """Close a connection taken with :meth:`_take`, freeing its slot."""
        try:
            connection.close()
        finally:
            self._slots.release()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:  # an idle connection holds no slot
            connection.close()

    def close(self) -> None:
        """Close every idle connection (those in use close as they come back, if over)."""
        self._drop_idle()


def _run(
    connection: psycopg.Connection[Any], sql: str, params: Mapping[str, Any] | None
) -> list[Any]:
    cursor = connection.execute(sql, params)
    return cursor.fetchall() if cursor.description is not None else []


#: Each statement's SQL for psycopg, by the statement's identity (a clause's ``==`` builds
#: SQL, so it cannot be a dictionary key itself); the statement is kept alive with it.
_SQL: dict[int, tuple[ClauseElement, str]] = {}


def _compiled(statement: ClauseElement) -> str:
    """``statement``'s SQL for psycopg (``%(name)s`` parameters), compiled once."""
    known = _SQL.get(id(statement))
    if known is None or known[0] is not statement:
        known = _SQL[id(statement)] = (statement, str(statement.compile(dialect=_DIALECT)))
    return known[1]


@functools.cache
def direct(url: str, application_name: str = APPLICATION_NAME) -> Direct | None:
    """The process's :class:`Direct` for ``url`` (one for each ``application_name``); None off
    PostgreSQL (SQLite, the embedded default, takes SQLAlchemy's way)."""
    if make_url(url).get_backend_name() != "postgresql":
        return None
    return Direct(url, application_name=application_name)
