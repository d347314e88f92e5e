"""Suspect jobs run alone, so that a worker's death can be blamed on the job that caused it.

When a worker process dies (a segfault in a native library, the kernel's OOM
killer, a job that calls ``os._exit``), every job it had started loses its
attempt, and all of them come back redelivered: the one that killed it, and the
bystanders. Counting lost attempts alone would fail a bystander that happened
to share a worker with a poison job twice.

So a *suspect*, a job on its second attempt or later, runs alone: every job
claims under a shared :class:`Gate`, and a suspect, once claimed, waits until
the jobs already running end and keeps new ones from being claimed until it
ends. If it kills its worker again, nothing else had been claimed there, and
after ``DELIVERY_LIMIT`` attempts the runner fails it as poison with
certainty. Bystanders of a first death run alone on their retry and succeed.

Isolation waits at most ``patience`` seconds for the running jobs (one could be
stuck); after that the suspect runs beside them, and the log says so.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class Gate:
    """A shared/exclusive gate over the jobs of one worker; exclusive requests come first."""

    def __init__(self, *, patience: float = 60.0) -> None:
        self.patience = patience
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._queued_alone = 0

    def enter(self) -> None:
        """Take a shared place; waits while a suspect runs (or waits to run) alone."""
        with self._cond:
            while self._alone or self._queued_alone:
                self._cond.wait()
            self._shared += 1

    def leave(self) -> None:
        with self._cond:
            self._shared -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def alone(self, job_id: str = "") -> Iterator[bool]:
        """From a shared place, run alone; yields whether isolation was reached."""
        deadline = time.monotonic() + self.patience
        with self._cond:
            self._queued_alone += 1
            self._shared -= 1
            while (self._alone or self._shared) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            self._queued_alone -= 1
            isolated = not (self._alone or self._shared)
            if isolated:
                self._alone = True
            else:
                self._shared += 1
                self._cond.notify_all()
        if not isolated:
            log.warning("job %s: could not run alone within %.0f s", job_id, self.patience)
        try:
            yield isolated
        finally:
            with self._cond:
                if isolated:
                    self._alone = False
                    self._shared += 1
                self._cond.notify_all()

    @property
    def running(self) -> int:
        with self._cond:
            return self._shared + (1 if self._alone else 0)
