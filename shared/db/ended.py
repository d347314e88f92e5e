"""Jobs ending, told at once: PostgreSQL ``NOTIFY`` on the terminal write, ``LISTEN`` in a wait.

A trigger on the jobs table (migration 0005) sends the job's id on the channel
:data:`CHANNEL` whenever its state becomes terminal, whoever wrote it; the notice
goes out at commit, when the row is visible, and not at all if the write rolls
back. It costs the writer no extra statement. ``Client.wait`` listens
while it waits: it reads the row again as soon as its job's id comes, instead of on
its next poll. Polls go on beside it (a notice is a hint, never the truth: one sent
while the listening connection was away is lost), and on SQLite, which has no
notices, they are all there is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "pipeq_job_ended"


class Listener:
    """Waits for a job's notice on a connection of the calling thread's own (PostgreSQL)."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._local = threading.local()

    @contextlib.contextmanager
    def listening(self) -> Iterator[Listener]:
        """Listen for notices while the block runs (none are kept between waits)."""
        connection = self._connection()
        if connection is not None:
            self._run(f"LISTEN {CHANNEL}")
        try:
            yield self
        finally:
            if connection is not None:
                self._run(f"UNLISTEN {CHANNEL}")

    def wait_for(self, job_id: str, timeout: float) -> bool:
        """Sleep until ``job_id``'s notice comes (True) or ``timeout`` seconds pass."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            time.sleep(timeout)
            return False
        try:
            for notice in connection.notifies(timeout=timeout):
                if notice.payload == job_id:
                    return True
        except Exception as exc:  # the connection broke: poll without it from now on
            log.debug("listening for job notices failed (%s); polling", exc)
            self._drop()
        return False

    def _connection(self) -> Any:
        if not self.enabled:
            return None
        if getattr(self._local, "connection", None) is None:
            import psycopg

            try:
                self._local.connection = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
            except psycopg.Error as exc:
                log.debug("no connection to listen for job notices (%s); polling", exc)
                return None
        return self._local.connection

    def _run(self, statement: str) -> None:
        try:
            self._local.connection.execute(statement)
        except Exception as exc:
            log.debug("%s failed (%s); polling", statement, exc)
            self._drop()

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
