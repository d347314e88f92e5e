"""The fleet's backlog for Prometheus: unfinished jobs by task and state, from the database.

A worker counts what it ran; only the database knows what waits. The gateway,
which every deployment runs and which already reads the jobs table, answers on
``/metrics``: ``pipeq_jobs{task, state}`` for QUEUED and RUNNING jobs, and
``pipeq_jobs_oldest_queued_seconds{task}``, the age of the oldest QUEUED job (the
number an alert on "jobs wait too long" wants). One grouped query over the
``(state, ...)`` index, at most once per ``max_age`` seconds per process, so
scrapes from several Prometheus servers cost one query. If the database is away
the scrape still answers, with ``pipeq_jobs_backlog_up 0``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.states import State

log = logging.getLogger(__name__)

ACTIVE = (State.QUEUED.value, State.RUNNING.value)
Row = tuple[str, str, int, datetime | None]


class Backlog(Collector):
    """A Prometheus collector over the jobs table (see the module docstring)."""

    def __init__(self, db_url: str, *, max_age: float = 2.0) -> None:
        self.db_url = db_url
        self.max_age = max_age
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._rows: list[Row] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # no query when registered

    def collect(self) -> Iterable[Metric]:
        rows = self.rows()
        up = GaugeMetricFamily("pipeq_jobs_backlog_up", "Whether the jobs table could be read.")
        up.add_metric([], 0.0 if rows is None else 1.0)
        if rows is None:
            return [up]
        jobs = GaugeMetricFamily(
            "pipeq_jobs",
            "Unfinished jobs in the database, by task and state.",
            labels=["task", "state"],
        )
        oldest = GaugeMetricFamily(
            "pipeq_jobs_oldest_queued_seconds",
            "Age of the oldest QUEUED job, by task.",
            labels=["task"],
        )
        now = datetime.now(UTC)
        for task, state, count, first in rows:
            jobs.add_metric([task, state], float(count))
            if state == State.QUEUED.value and first is not None:
                oldest.add_metric([task], max((now - first).total_seconds(), 0.0))
        return [up, jobs, oldest]

    def rows(self) -> list[Row] | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self.max_age:
                self._rows = self._read()
                self._read_at = time.monotonic()
            return self._rows

    def _read(self) -> list[Row] | None:
        statement = (
            select(Job.task, Job.state, func.count(), func.min(Job.created_at))
            .where(Job.state.in_(ACTIVE))
            .group_by(Job.task, Job.state)
        )
        try:
            with session_scope(self.db_url) as session:
                return [(t, s, int(n), first) for t, s, n, first in session.execute(statement)]
        except Exception as exc:
            log.warning("metrics: cannot read the backlog: %s", exc)
            return None
