"""with_backoff: pauses doubling up to a cap while the error comes, the error once time is up."""

from __future__ import annotations

import pytest

from shared.errors import DatabaseUnavailable
from shared.retrying import with_backoff


def test_tries_again_with_doubling_pauses_up_to_the_cap() -> None:
    failures = iter([DatabaseUnavailable("away")] * 3)
    pauses: list[float] = []

    def call() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "done"

    result = with_backoff(
        call,
        errors=DatabaseUnavailable,
        seconds=5,
        first=0.01,
        most=0.03,
        on_retry=lambda exc, pause: pauses.append(pause),
    )
    assert result == "done"
    assert pauses == [0.01, 0.02, 0.03]


def test_the_error_comes_out_once_the_time_is_up_and_others_at_once() -> None:
    calls: list[int] = []

    def away() -> None:
        calls.append(1)
        raise DatabaseUnavailable("still away")

    with pytest.raises(DatabaseUnavailable, match="still away"):
        with_backoff(away, errors=DatabaseUnavailable, seconds=0.05, first=0.01, most=0.01)
    assert 2 <= len(calls) <= 6

    def broken() -> None:
        calls.append(2)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        with_backoff(broken, errors=DatabaseUnavailable, seconds=5, first=0.01, most=0.01)
    assert calls.count(2) == 1
