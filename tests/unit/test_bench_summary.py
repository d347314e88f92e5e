"""The batching bench's summary of its rounds (medians, figure by figure) and what it reads
from the worker's log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from services.worker.rows import Rows
from shared.errors import DatabaseUnavailable, TransactionRolledBack
from shared.settings import Settings
from tests.bench.batching import _db_retries, _lone_threads, _medians


def test_each_figure_is_the_median_of_its_rounds_and_dicts_figure_by_figure() -> None:
    rounds = [
        {"tps": 100.0, "batches": 64, "ratio": 2.9, "cpu_s": {"worker": 11.0, "postgres": 1.2}},
        {"tps": 130.0, "batches": 63, "ratio": 3.3, "cpu_s": {"worker": 9.0, "postgres": 1.4}},
        {"tps": 120.0, "batches": 65, "ratio": 3.1, "cpu_s": {"worker": 12.0, "postgres": 0.9}},
    ]
    assert _medians(rounds) == {
        "tps": 120.0,
        "batches": 64,
        "ratio": 3.1,  # the rounds' own ratios, not a ratio of medians
        "cpu_s": {"worker": 11.0, "postgres": 1.2},
    }


def test_an_even_number_of_rounds_meets_in_the_middle() -> None:
    assert _medians([{"tps": 100.0, "n": 1}, {"tps": 111.0, "n": 2}]) == {"tps": 105.5, "n": 1.5}


def test_the_retries_counted_are_the_lines_the_worker_logs_when_it_retries(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bench reads retries from the worker's log: its count must follow what the worker
    writes there, for both kinds (the database away, a transaction rolled back)."""
    rows = Rows(
        db_url,
        worker="w1",
        settings=Settings(database_url=db_url, home=tmp_path / "home"),
        retry_seconds=5,
    )
    failures: list[Exception] = [
        DatabaseUnavailable("database: database unavailable (test)"),
        TransactionRolledBack("database: the database rolled the transaction back (test)"),
    ]

    def write(session: Session) -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    with caplog.at_level(logging.WARNING, logger="services.worker.rows"):
        assert rows.persist_alone(write) == "written"
    assert _db_retries(caplog.text) == 2


def test_the_lone_thread_counts_read_are_each_process_s_last_choice(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The bench reads the lone choices from the worker's log lines, as a child writes them."""
    from services.worker import threads
    from shared.logs import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(threads, "REVISIT", 0)  # a new round after every decision
    try:
        for process, costs in (("1", [{2: 0.008, 1: 0.012}]), ("2", [{2: 0.008, 1: 0.012}] * 2)):
            configure_logging("INFO", process=process)
            choice = threads.LoneChoice(lone=2, busy=1, model="minilm")
            for cost in [*costs, {2: 0.020, 1: 0.012}]:  # then one thread turns out faster
                for _ in range(2 * threads.TRIALS):
                    count = choice.pick()
                    choice.record(count, cost[count])
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    log = capfd.readouterr().err
    assert log.count("lone passes on") == 4  # each process: two threads, then one
    assert _lone_threads(log) == 1.0
    lines = log.splitlines()
    assert _lone_threads(lines[0]) == 2.0  # process 1's first choice only
    assert _lone_threads("\n".join(lines[:3])) == 1.5  # process 1 on one thread, 2 on two
    assert _lone_threads("no choice logged") is None
