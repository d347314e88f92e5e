"""When a schedule runs: a cron expression or a fixed interval, in UTC.

A schedule row stores its cadence and the moment of its next run
(``next_run_at``). Beat fires a schedule once that moment has passed, then
asks :meth:`Cadence.following` for the next one. Everything here is pure: the
current time is an argument, never read, so the rules are tested with any clock.

Missed runs (beat was down, or slow) are coalesced: however many runs were
missed, the schedule fires once for the oldest of them, and its next run is the
first one after *now*. Intervals keep their phase (``--every 10m`` started at
12:03 runs at :03, :13, ... even after a gap); cron expressions keep their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from croniter import CroniterBadDateError, croniter

from shared.durations import format_duration, parse_duration

MIN_INTERVAL: Final = timedelta(seconds=1)
_HASHED: Final = re.compile(r"(?<![a-z])h(?![a-z])", re.IGNORECASE)
CRON_MACROS: Final = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


@dataclass(frozen=True)
class Cadence:
    """Exactly one of ``cron`` (five fields, UTC) or ``every`` (at least one second)."""

    cron: str | None = None
    every: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of a cron expression or an interval")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None and self.every < MIN_INTERVAL:
            raise ValueError(f"an interval must be at least {MIN_INTERVAL.total_seconds():g} s")

    @classmethod
    def parse(cls, *, cron: str | None = None, every: str | None = None) -> Cadence:
        """From what a person typed: ``cron="0 3 * * *"`` or ``every="10m"``."""
        if every is not None:
            return cls(cron=cron, every=parse_duration(every))
        return cls(cron=" ".join(cron.split()) if cron is not None else None)

    def __str__(self) -> str:
        return f"cron {self.cron}" if self.cron is not None else f"every {self.describe_every()}"

    def describe_every(self) -> str:
        return format_duration(self.every) if self.every is not None else ""

    def first(self, now: datetime) -> datetime:
        """The first run of a new (or resumed) schedule: the next cron match, or one interval on."""
        now = _utc(now)
        if self.every is not None:
            return now.replace(microsecond=0) + self.every
        return self._cron_after(now)

    def following(self, slot: datetime, *, now: datetime) -> datetime:
        """The run after the one due at ``slot``: the first slot after both it and ``now``."""
        slot, now = _utc(slot), _utc(now)
        if self.every is not None:
            if now < slot:
                return slot + self.every
            skipped = (now - slot) // self.every
            return slot + (skipped + 1) * self.every
        return self._cron_after(max(slot, now))

    def _cron_after(self, moment: datetime) -> datetime:
        found = croniter(self.cron, moment).get_next(datetime)
        if not isinstance(found, datetime):
            raise TypeError(f"croniter returned {found!r}")
        return _utc(found)


def check_cron(expression: str) -> str:
    """``expression`` if it is a five-field cron expression (or a macro such as ``@daily``)."""
    fields = expression.split()
    if fields and fields[0].lower() in CRON_MACROS and len(fields) == 1:
        return expression
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expression!r} has {len(fields)} fields; "
            "pipeq takes five: minute hour day-of-month month day-of-week (UTC)"
        )
    # croniter's "H" (hashed) fields are not cron; month and day names (thu) may contain an h.
    if _HASHED.search(expression) or not croniter.is_valid(expression):
        raise ValueError(f"not a valid cron expression: {expression!r}")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:  # "0 3 31 2 *": February has no 31st
        raise ValueError(f"cron expression {expression!r} matches no date") from None
    return expression


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime reached the scheduler; pipeq schedules in UTC")
    return moment.astimezone(UTC)
