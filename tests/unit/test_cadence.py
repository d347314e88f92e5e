"""When schedules run: durations, cron and intervals, missed runs; every clock is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.cadence import Cadence
from shared.durations import format_duration, parse_duration

T0 = datetime(2026, 3, 1, 12, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("45", 45),
        ("1.5s", 1.5),
        (" 1H 5M ", 3900),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5m", "m10", "1h-5m", "5 m s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 90, 3600, 5400, 86400 + 61, 1.5])
def test_formatted_durations_read_back(seconds: float) -> None:
    span = timedelta(seconds=seconds)
    assert parse_duration(format_duration(span)) == span
    assert format_duration(timedelta(minutes=90)) == "1h30m"


def test_interval_first_run_is_one_interval_after_now() -> None:
    every = Cadence.parse(every="10m")
    assert every.first(T0 + timedelta(microseconds=250)) == T0 + timedelta(minutes=10)
    assert str(every) == "every 10m"


def test_interval_runs_keep_their_phase() -> None:
    every = Cadence(every=timedelta(minutes=10))
    slot = T0 + timedelta(minutes=10)
    # On time, or a little late: the next slot is one interval on.
    assert every.following(slot, now=slot) == slot + timedelta(minutes=10)
    assert every.following(slot, now=slot + timedelta(seconds=3)) == slot + timedelta(minutes=10)
    # Early (a clock a little behind): still the slot after this one.
    assert every.following(slot, now=slot - timedelta(seconds=1)) == slot + timedelta(minutes=10)


def test_missed_interval_runs_coalesce_to_the_first_slot_after_now() -> None:
    every = Cadence(every=timedelta(minutes=10))
    slot = T0 + timedelta(minutes=10)  # 12:13
    now = datetime(2026, 3, 1, 15, 17, 30, tzinfo=UTC)  # beat was down for three hours
    assert every.following(slot, now=now) == datetime(2026, 3, 1, 15, 23, tzinfo=UTC)
    exactly_on_a_slot = datetime(2026, 3, 1, 15, 13, tzinfo=UTC)
    assert every.following(slot, now=exactly_on_a_slot) == datetime(2026, 3, 1, 15, 23, tzinfo=UTC)


def test_cron_runs_at_its_matches_in_utc() -> None:
    nightly = Cadence.parse(cron="0  3 * * *")
    assert nightly.cron == "0 3 * * *" and str(nightly) == "cron 0 3 * * *"
    assert nightly.first(T0) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    slot = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert nightly.following(slot, now=slot) == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    weekdays = Cadence(cron="30 9 * * mon-fri")
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    assert weekdays.first(saturday) == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)
    assert Cadence(cron="@hourly").first(T0) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def test_missed_cron_runs_coalesce_to_the_first_match_after_now() -> None:
    every_quarter = Cadence(cron="*/15 * * * *")
    slot = datetime(2026, 3, 1, 12, 15, tzinfo=UTC)
    now = datetime(2026, 3, 1, 18, 7, tzinfo=UTC)
    assert every_quarter.following(slot, now=now) == datetime(2026, 3, 1, 18, 15, tzinfo=UTC)


def test_times_in_other_zones_are_converted_and_naive_ones_refused() -> None:
    from zoneinfo import ZoneInfo

    paris = datetime(2026, 3, 1, 13, 3, tzinfo=ZoneInfo("Europe/Paris"))
    assert Cadence(cron="0 3 * * *").first(paris) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        Cadence(every=timedelta(minutes=1)).first(datetime(2026, 3, 1))


@pytest.mark.parametrize(
    ("cron", "every"),
    [
        (None, None),
        ("0 3 * * *", "10m"),
        ("61 * * * *", None),
        ("0 3 * *", None),
        ("0 0 3 * * *", None),  # croniter's seconds field: not cron
        ("H * * * *", None),  # croniter's hashed field: not cron
        ("@sometimes", None),
        ("0 3 31 2 *", None),  # well formed, but February has no 31st: a croniter traceback once
        (None, "0s"),
        (None, "0.5s"),
    ],
)
def test_malformed_cadences_are_refused(cron: str | None, every: str | None) -> None:
    with pytest.raises(ValueError):
        Cadence.parse(cron=cron, every=every)
