"""Suspect jobs run alone, so that a worker's death can be blamed on the job that caused it.

When a worker process dies (a segfault in a native library, the kernel's OOM
killer, a job that calls ``os._exit``), every job it had started loses its
attempt, and all of them come back redelivered: the one that killed it, and the
bystanders. Counting lost attempts alone would fail a bystander that happened
to share a worker with a poison job twice.

So a *suspect*, a job claimed before (its row says so), runs alone: every job
is claimed under a shared place in the :class:`Gate`, while a suspect first
waits for the exclusive place: for the jobs already running to end, keeping new
ones (and other suspects) from being claimed meanwhile. If it kills its worker
again, nothing else had been claimed there, so after ``DELIVERY_LIMIT`` attempts
the runner fails it as poison with certainty, and bystanders of a first death
run alone on their retry and succeed. (A job found claimed only once its own
claim lands, a race, is isolated from its shared place with :meth:`Gate.alone`.)

Isolation waits at most ``patience`` seconds for the running jobs (one could be
stuck); after that the suspect runs beside them, and the log says so.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


class Gate:
    """A shared/exclusive gate over the jobs of one worker; exclusive requests come first."""

    def __init__(
        self, *, patience: float = 60.0, on_change: Callable[[int], None] | None = None
    ) -> None:
        self.patience = patience
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._queued_alone = 0
        #: Told the number of jobs in hand whenever it may have changed (under the lock).
        self._on_change = on_change or (lambda _count: None)

    def _in_hand(self) -> int:
        """Jobs holding a place (lock held)."""
        return self._shared + int(self._alone)

    def _changed(self) -> None:
        self._on_change(self._in_hand())

    def enter(self, *, alone: bool = False, job_id: str = "") -> bool:
        """Take a place: shared (waits while a suspect runs or waits to run alone), or alone.

        Returns whether the place is exclusive; give it back with :meth:`leave`.
        """
        with self._cond:
            if not alone:
                while self._alone or self._queued_alone:
                    self._cond.wait()
                self._shared += 1
                self._changed()
                return False
            isolated = self._wait_alone()
            self._changed()
        if not isolated:
            log.warning("job %s: could not run alone within %.0f s", job_id, self.patience)
        return isolated

    def leave(self, isolated: bool = False) -> None:
        with self._cond:
            if isolated:
                self._alone = False
            else:
                self._shared -= 1
            self._changed()
            self._cond.notify_all()

    @contextlib.contextmanager
    def alone(self, job_id: str = "") -> Iterator[bool]:
        """From a shared place, run alone; yields whether isolation was reached."""
        with self._cond:
            self._shared -= 1
            isolated = self._wait_alone()
            self._changed()
        if not isolated:
            log.warning("job %s: could not run alone within %.0f s", job_id, self.patience)
        try:
            yield isolated
        finally:
            with self._cond:
                if isolated:
                    self._alone = False
                    self._shared += 1
                self._changed()
                self._cond.notify_all()

    def _wait_alone(self) -> bool:
        """With the lock held and no place: take the exclusive place, or (past patience, with
        no suspect alone) a shared one beside jobs that would not end."""
        deadline = time.monotonic() + self.patience
        self._queued_alone += 1
        try:
            while True:
                if not self._alone and not self._shared:
                    self._alone = True
                    return True
                left = deadline - time.monotonic()
                if not self._alone and left <= 0:
                    self._shared += 1
                    return False
                self._cond.wait(left if left > 0 else None)
        finally:
            self._queued_alone -= 1
            self._cond.notify_all()

    @property
    def running(self) -> int:
        with self._cond:
            return self._in_hand()
