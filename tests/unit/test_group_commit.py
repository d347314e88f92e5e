"""Group commit without a database: a fake ``persist`` records each transaction.

Threads are orchestrated with events: a write that blocks holds the first
transaction open while others queue behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.worker.group_commit import GroupCommit
from shared.errors import DatabaseUnavailable


class FakeSession:
    def expire_all(self) -> None:
        pass


class Transactions:
    """``persist``: each call is one transaction; it records which writes it ran."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.down = False

    def __call__(self, write: Callable[[Any], Any]) -> Any:
        if self.down:
            raise DatabaseUnavailable("database unavailable (test)")
        session = FakeSession()
        result = write(session)
        self.runs.append(len(result) if isinstance(result, list) else 1)
        return result


def _in_threads(
    group: GroupCommit, writes: list[Callable[[Any], Any]]
) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(writes)

    def run(index: int) -> None:
        try:
            results[index] = group.run(writes[index])
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writes))]
    for thread in threads:
        thread.start()
    return threads, results


def _held_first(group: GroupCommit, release: threading.Event) -> threading.Thread:
    entered = threading.Event()

    def first(session: Any) -> str:
        entered.set()
        assert release.wait(10)
        return "first"

    thread = threading.Thread(target=lambda: group.run(first))
    thread.start()
    assert entered.wait(10)
    return thread


def _queued(group: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        with group._cond:
            if len(group._queued) == count:
                return
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_lone_write_commits_at_once_alone() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    assert group.run(lambda session: "done") == "done"
    assert transactions.runs == [1]


def test_writes_queued_during_a_commit_commit_together() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    release = threading.Event()
    first = _held_first(group, release)
    threads, results = _in_threads(group, [lambda s, i=i: f"w{i}" for i in range(5)])
    _queued(group, 5)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    assert results == ["w0", "w1", "w2", "w3", "w4"]
    assert transactions.runs == [1, 5]  # the first alone, then the five queued behind it


def test_a_write_that_raises_fails_alone_and_the_others_commit() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    release = threading.Event()
    first = _held_first(group, release)

    def bad(session: Any) -> str:
        raise ValueError("a bug in one write")

    writes: list[Callable[[Any], Any]] = [lambda s: "a", bad, lambda s: "c"]
    threads, results = _in_threads(group, writes)
    _queued(group, 3)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    values = sorted(str(r) for r in results)
    assert values == ["a", "a bug in one write", "c"]
    assert any(isinstance(r, ValueError) for r in results)


def test_with_the_database_away_every_writer_hears_it() -> None:
    transactions = Transactions()
    transactions.down = True
    group = GroupCommit(transactions)
    with pytest.raises(DatabaseUnavailable):
        group.run(lambda session: "never")


def test_bulk_writes_of_a_group_run_as_one_call_and_answer_in_order() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    calls: list[list[int]] = []

    def many(session: Any, numbers: list[int]) -> list[int]:
        calls.append(numbers)
        return [n * 10 for n in numbers]

    release = threading.Event()
    first = _held_first(group, release)
    results: list[Any] = [None] * 6

    def run(index: int) -> None:
        if index == 3:  # a plain write among the bulk ones
            results[index] = group.run(lambda s: "plain")
        else:
            results[index] = group.run(lambda s: many(s, [index])[0], bulk=(many, index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for i, thread in enumerate(threads):
        thread.start()
        _queued(group, i + 1)  # a known order in the queue
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    assert results == [0, 10, 20, "plain", 40, 50]
    assert calls == [[0, 1, 2, 4, 5]]  # one call for the five bulk writes
    assert transactions.runs == [1, 6]


def test_a_failing_bulk_call_runs_each_write_alone() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)

    def many(session: Any, numbers: list[int]) -> list[int]:
        if 2 in numbers:
            raise ValueError("2 is bad")
        return numbers

    release = threading.Event()
    first = _held_first(group, release)
    results: list[Any] = [None] * 3

    def run(index: int) -> None:
        try:
            results[index] = group.run(lambda s: many(s, [index])[0], bulk=(many, index))
        except ValueError as exc:
            results[index] = str(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    _queued(group, 3)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    assert sorted(map(str, results)) == ["0", "1", "2 is bad"]


def test_many_threads_writing_at_once_each_get_their_own_result_once() -> None:
    """Whatever the interleaving (a newcomer may take the group that the oldest queued
    writer was woken for), every write runs once and every thread returns."""
    lock = threading.Lock()
    ran: list[int] = []

    def persist(write: Callable[[Any], Any]) -> Any:
        time.sleep(0.0002)  # a commit: the other threads queue meanwhile
        return write(FakeSession())

    group = GroupCommit(persist)
    threads_count, writes_each = 16, 150
    answers: list[list[int]] = [[] for _ in range(threads_count)]

    def write(number: int) -> Callable[[Any], int]:
        def run(session: Any) -> int:
            with lock:
                ran.append(number)
            return number

        return run

    def worker(index: int) -> None:
        for n in range(writes_each):
            answers[index].append(group.run(write(index * writes_each + n)))

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads_count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a writer was never woken"
    expected = [list(range(i * writes_each, (i + 1) * writes_each)) for i in range(threads_count)]
    assert answers == expected
    assert sorted(ran) == list(range(threads_count * writes_each))
    assert group.groups < threads_count * writes_each  # some writes did share a commit


def test_a_lingering_write_holds_its_group_open_until_others_fill_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(GroupCommit, "FULL", 3)
    transactions = Transactions()
    group = GroupCommit(transactions)
    answers: list[Any] = []
    lingering = threading.Thread(
        target=lambda: answers.append(group.run(lambda session: "first", linger=600))
    )
    lingering.start()
    _queued(group, 1)  # it lingers: nothing is committed yet
    assert transactions.runs == []
    threads, results = _in_threads(group, [lambda s: "a", lambda s: "b"])
    for thread in [lingering, *threads]:
        thread.join(10)  # long before the 600 s linger: the group filled
    assert answers == ["first"] and results == ["a", "b"]
    assert transactions.runs == [3]


def test_a_lingering_write_alone_commits_when_its_linger_ends() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    assert group.run(lambda session: "done", linger=0.01) == "done"
    assert transactions.runs == [1]


def test_a_lingering_write_stops_waiting_once_its_group_holds_full() -> None:
    transactions = Transactions()
    group = GroupCommit(transactions)
    answers: list[Any] = []
    lingering = threading.Thread(
        target=lambda: answers.append(group.run(lambda session: "first", linger=600, full=2))
    )
    lingering.start()
    _queued(group, 1)
    threads, results = _in_threads(group, [lambda s: "second"])
    for thread in [lingering, *threads]:
        thread.join(10)  # long before the 600 s linger: two of two came
    assert answers == ["first"] and results == ["second"]
    assert transactions.runs == [2]
