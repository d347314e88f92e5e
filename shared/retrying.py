"""A call tried again with doubling pauses while a dependency is away, for a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_backoff(
    call: Callable[[], T],
    *,
    errors: type[BaseException],
    seconds: float,
    first: float,
    most: float,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """``call()``; while it raises ``errors``, again after ``first`` seconds, then twice as
    long each time up to ``most``. An error that comes when the next pause would end past
    ``seconds`` from the start is raised. ``on_retry(error, pause)`` before each pause."""
    deadline = time.monotonic() + seconds
    delay = first
    while True:
        try:
            return call()
        except errors as exc:
            if time.monotonic() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, most)
