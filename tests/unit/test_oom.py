"""Out of memory: a batch is retried in halves, in order, until one input alone fails."""

from __future__ import annotations

import pytest

from services.worker.oom import is_out_of_memory, predict_splitting
from shared.errors import JobCancelled, ModelFailure
from tests.faults import OutOfMemoryError


class Device:
    """A fake forward pass that runs out of memory above ``fits`` items."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.batches: list[int] = []
        self.released = 0

    def predict(self, items: list[int]) -> list[int]:
        self.batches.append(len(items))
        if len(items) > self.fits:
            raise OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(items)} GiB")
        return [item * 10 for item in items]

    def release(self) -> None:
        self.released += 1


def test_a_batch_that_fits_runs_once() -> None:
    device = Device(fits=8)
    assert predict_splitting(device.predict, [1, 2, 3], release=device.release) == [10, 20, 30]
    assert device.batches == [3] and device.released == 0


def test_a_batch_too_large_is_halved_until_it_fits_and_keeps_its_order() -> None:
    device = Device(fits=2)
    items = list(range(7))
    assert predict_splitting(device.predict, items, release=device.release) == [
        i * 10 for i in items
    ]
    # 7 -> 3 + 4 -> (1 + 2) + (2 + 2)
    assert device.batches == [7, 3, 1, 2, 4, 2, 2]
    assert device.released == 3


def test_one_input_that_does_not_fit_fails_the_job_clearly() -> None:
    device = Device(fits=0)
    with pytest.raises(ModelFailure, match="out of memory on a single input") as caught:
        predict_splitting(device.predict, [1, 2], release=device.release)
    assert isinstance(caught.value.__cause__, OutOfMemoryError)
    assert device.batches == [2, 1]


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken(items: list[int]) -> list[int]:
        calls.append(len(items))
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError):
        predict_splitting(broken, [1, 2, 3, 4], release=lambda: None)
    assert calls == [4]


def test_a_stop_between_halves_is_honoured() -> None:
    device = Device(fits=1)
    checks: list[int] = []

    def check() -> None:
        checks.append(1)
        if len(checks) == 2:
            raise JobCancelled("cancelled by user")

    with pytest.raises(JobCancelled):
        predict_splitting(device.predict, [1, 2, 3, 4], release=device.release, check=check)
    assert device.batches == [4, 2]  # stopped before the first half of the half


def test_out_of_memory_is_recognised_by_name_message_or_cause() -> None:
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 GB"))
    wrapped = ModelFailure("predicting: out of memory (CUDA out of memory)")
    assert is_out_of_memory(wrapped)
    try:
        raise ModelFailure("predicting failed") from OutOfMemoryError("y")
    except ModelFailure as exc:
        assert is_out_of_memory(exc)
    assert not is_out_of_memory(ValueError("memory is fine"))
