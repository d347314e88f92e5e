"""One tick of beat: submit the due runs, then do whichever housekeeping is due.

:class:`Beat` holds no schedule in memory: each tick reads the ``schedules``
table, so a schedule added, paused, resumed or removed from the CLI counts from
the next tick, at most ``PIPEQ_BEAT_POLL_INTERVAL`` later. The clock is a
constructor argument, and so is the worker pinger: tests drive a Beat through
any moments they like, on a real database and broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.beat import housekeeping
from services.beat.runs import Run, due_runs
from shared.client import Client
from shared.db import schedules as schedules_repo
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class Tick:
    """What one tick did, and how long beat may sleep after it."""

    runs: list[Run] = field(default_factory=list)
    purge: housekeeping.Purge | None = None
    stale: list[str] | None = None
    workers: list[str] | None = None
    sleep: float = 0.0


class Beat:
    """Runs schedules and housekeeping against one database and broker.

    Housekeeping (expired jobs, stale jobs) and the worker ping each run on
    the first tick, then every ``housekeeping_interval`` and
    ``worker_ping_interval``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Client | None = None,
        clock: Clock = utcnow,
        pinger: housekeeping.Pinger | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or Client(settings)
        self.clock = clock
        self.pinger = pinger or housekeeping.celery_pinger(
            self.client.app, timeout=settings.worker_ping_timeout.total_seconds()
        )
        self._next_housekeeping: datetime | None = None
        self._next_ping: datetime | None = None

    def tick(self) -> Tick:
        now = self.clock()
        done = Tick(runs=due_runs(self.client, now=now))
        if self._next_housekeeping is None or now >= self._next_housekeeping:
            done.purge = housekeeping.purge_expired(self.settings, now=now)
            done.stale = housekeeping.sweep_stale(
                self.settings, now=now, publish=self.client.publish_message
            )
            self._next_housekeeping = now + self.settings.housekeeping_interval
            _log_housekeeping(done)
        if self._next_ping is None or now >= self._next_ping:
            done.workers = housekeeping.record_workers(self.settings, self.pinger, now=self.clock())
            self._next_ping = now + self.settings.worker_ping_interval
        done.sleep = self._sleep_after(self.clock())
        return done

    def _sleep_after(self, now: datetime) -> float:
        """Until the next thing due, but never past the poll interval (to see changes)."""
        with session_scope(self.settings.resolved_database_url) as session:
            next_run = schedules_repo.next_due_at(session)
        wake = now + self.settings.beat_poll_interval
        for moment in (next_run, self._next_housekeeping, self._next_ping):
            if moment is not None:
                wake = min(wake, moment)
        return max(wake - now, timedelta(0)).total_seconds()


def _log_housekeeping(done: Tick) -> None:
    purge = done.purge
    if purge is not None and (purge.deleted or purge.refused):
        log.info(
            "housekeeping: deleted %d finished jobs, %d artifacts (%d refused: outside the store)",
            purge.deleted,
            len(purge.artifacts),
            len(purge.refused),
        )
    if done.stale:
        log.warning("housekeeping: failed %d stale RUNNING jobs: %s", len(done.stale), done.stale)
