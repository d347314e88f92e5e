"""Group commit: the row writes of many job threads, committed as one transaction.

A batch of 32 jobs ends with 32 threads writing their terminal rows at once, and
32 commits cost more than the forward pass on a small model. So each write is
queued; the first thread to find no commit in progress takes every write queued
so far and runs them, in order, in one transaction (each write is still its own
conditional ``UPDATE ... WHERE lease = :mine``, so each job's guarantees hold);
the threads that queued meanwhile form the next group. Nobody waits for a group
to fill, a lone write commits at once, unless its caller says it may linger: a job
that will wait for its model's running forward pass anyway may give the writes of
others a few milliseconds to join its group (``linger``). Claims need it: a busy
worker's claims arrive one by one as the broker refills its prefetch, so each group
held 2.5 of them on average, and a claim alone cost 0.9 ms of CPU (0.4 in the worker,
0.5 in PostgreSQL) against 0.08 ms in a group of 32. The successes of a batch's jobs
linger likewise for one another (``full``: the batch's jobs), since they end together
but reach their writes one by one.

A write may also come in bulk form (``run(write, bulk=(many, argument))``): the
group then hands the arguments of all its writes with the same ``many`` to one
call of ``many(session, arguments)``, which answers each in order with a few
statements for the whole group (one ``UPDATE ... WHERE id IN (...) RETURNING``
rather than one per job; ``rows.py``). ``write`` is the same write for one
argument, used when it commits alone; a caller may also give ``alone``, what to do
instead of ``persist(write)`` then (``rows.py``: one statement outside a transaction).

If a group fails for any reason but the database being away (a write raised),
it is rolled back and each of its writes runs again in a transaction of its own,
so a write fails only its own caller. While the database is away, ``persist``
retries the whole group with backoff and, past its patience, every caller gets
:class:`~shared.errors.DatabaseUnavailable` (its message is handed back unacked).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from shared.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

Persist = Callable[[Callable[[Session], Any]], Any]
#: Many writes of one kind as one: their arguments in, their results out, in order.
Many = Callable[[Session, list[Any]], list[Any]]


@dataclass
class _Write(Generic[T]):
    write: Callable[[Session], T]
    bulk: tuple[Many, Any] | None = None
    alone: Callable[[], T] | None = None
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """Queue writes from many threads; commit whatever is queued together."""

    #: A lingering group commits once it holds this many writes.
    FULL = 32

    def __init__(self, persist: Persist) -> None:
        self._persist = persist
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        #: Wakes a lingering committer (not the writers waiting for theirs) at each arrival.
        self._joined = threading.Condition(lock)
        self._queued: list[_Write[Any]] = []
        self._committing = False
        self.groups = 0

    def run(
        self,
        write: Callable[[Session], T],
        *,
        bulk: tuple[Many, Any] | None = None,
        alone: Callable[[], T] | None = None,
        linger: float = 0.0,
        full: int | None = None,
    ) -> T:
        """``write`` in a transaction, maybe shared with other threads' writes; with
        ``bulk``, maybe as part of one call that does the group's writes of its kind; with
        ``alone``, that instead of ``write`` in a transaction of its own when not grouped;
        with ``linger``, if this write would start a group, it waits up to that many
        seconds, or until the group holds ``full`` writes (:attr:`FULL` if not given), for
        others to join it."""
        mine: _Write[T] = _Write(write, bulk, alone)
        with self._cond:
            self._queued.append(mine)
            self._joined.notify()
            while not mine.done and self._committing:
                self._cond.wait()
            if not mine.done:
                self._committing = True  # writes that come now queue behind this group
                if linger > 0:
                    self._linger(linger, min(full or self.FULL, self.FULL))
                group, self._queued = self._queued, []
        if not mine.done:
            try:
                self._commit(group)
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        result: T = mine.result
        return result

    def _linger(self, seconds: float, full: int) -> None:
        """Wait (lock held) for writes to join the queued group, for up to ``seconds`` or
        until it holds ``full``."""
        deadline = time.monotonic() + seconds
        while len(self._queued) < full and (left := deadline - time.monotonic()) > 0:
            self._joined.wait(left)

    def _commit(self, group: list[_Write[Any]]) -> None:
        self.groups += 1
        try:
            if len(group) == 1:
                self._settle(group[0])
                return
            results = self._persist(lambda session: _together(group, session))
        except DatabaseUnavailable as exc:
            for item in group:
                if not item.done:
                    item.error, item.done = exc, True
            return
        except Exception as exc:
            log.warning("a group of %d writes failed (%r); writing each alone", len(group), exc)
            for item in group:
                self._settle(item)
            return
        except BaseException as exc:
            for item in group:
                item.error, item.done = exc, True
            raise
        log.debug("committed %d row writes together", len(group))
        for item, result in zip(group, results, strict=True):
            item.result, item.done = result, True

    def _settle(self, item: _Write[Any]) -> None:
        """``item`` written by itself."""
        try:
            item.result = item.alone() if item.alone else self._persist(item.write)
        except BaseException as exc:
            item.error = exc
        item.done = True


def _together(group: list[_Write[Any]], session: Session) -> list[Any]:
    """Every write of the group, in one transaction: each bulk kind in one call."""
    results: list[Any] = [None] * len(group)
    kinds: dict[Many, list[int]] = {}
    for index, item in enumerate(group):
        if item.bulk is None:
            results[index] = _fresh(item, session)
        else:
            kinds.setdefault(item.bulk[0], []).append(index)
    for many, indexes in kinds.items():
        session.expire_all()
        answers = many(session, [group[index].bulk[1] for index in indexes])  # type: ignore[index]
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = answer
    return results


def _fresh(item: _Write[Any], session: Session) -> Any:
    """Each write reads the rows as the group's earlier writes left them, not as cached."""
    session.expire_all()
    return item.write(session)
