"""One active beat per database: a PostgreSQL advisory lock, or a lock file for SQLite.

A second ``pipeq beat`` on the same database waits (``--wait``, the default)
as a standby and takes over when the active one's lock goes, or exits with
``--no-wait``. The lock lives as long as the process's session or file
descriptor: a beat that is killed, or whose host vanishes, releases it with no
one tidying up (PostgreSQL ends the session when the connection drops).

The lock keeps housekeeping and schedules single; it is not what stops a run
from being submitted twice (the run's idempotency key and the conditional
update in :func:`shared.db.schedules.record_run` do that), so a beat that
loses its lock stops at its next tick and the worst case is a short overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

#: The advisory lock key (any fixed 64-bit number; locks are per database).
ADVISORY_KEY: Final = 0x7069706571626561  # "pipeqbea"


class BeatLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free (never blocks); True if this process holds it."""
        ...

    def held(self) -> bool:
        """Whether this process still holds the lock."""
        ...

    def release(self) -> None: ...

    def describe(self) -> str: ...


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own, kept open while beat runs."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._connection: Connection | None = None
        self._held = False

    def acquire(self) -> bool:
        if self._held:
            return True
        if self._connection is None:
            self._connection = self._engine.connect()
        self._held = bool(
            self._connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
            )
        )
        return self._held

    def held(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except Exception:
            self._held = False  # the session is gone, and the lock with it
        return self._held

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                if self._held:
                    self._connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY}
                    )
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None
        self._held = False
        self._engine.dispose()

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {ADVISORY_KEY}"


class FileLock:
    """``flock`` on a file beside the SQLite database (SQLite is one host anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def describe(self) -> str:
        return f"lock file {self.path}"


def lock_for(database_url: str) -> BeatLock:
    """The lock that suits the database at ``database_url``."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(database_url)
    database = url.database or ""
    if not database or database == ":memory:":
        raise ValueError("pipeq beat needs a database file or server, not an in-memory SQLite")
    return FileLock(Path(database).resolve().with_name(Path(database).name + ".beat-lock"))
