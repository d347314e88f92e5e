"""Out of memory in a forward pass: try the batch again in halves, then fail clearly.

A batch that does not fit (CUDA out of memory, or the CPU allocator giving up)
is split in two and each half run on its own, recursively, so a job of 64 long
texts still succeeds on a crowded GPU as 4 passes of 16. Outputs come back in
the order of the inputs. If a single input alone does not fit, the job fails
with :class:`ModelFailure` and a message that says what to try. The device's
cache is emptied between tries (``release``), and ``check`` lets a cancelled or
timed-out job stop between the halves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shared.errors import ModelFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError (by name: no torch import) and allocator failures."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "OutOfMemoryError":
            return True
        if isinstance(seen, RuntimeError | MemoryError | ModelFailure) and any(
            marker in str(seen).lower() for marker in _MARKERS
        ):
            return True
        seen = seen.__cause__
    return False


def release_cuda_cache() -> None:
    """Give cached CUDA blocks back before trying a smaller batch (no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_splitting(
    predict: Callable[[list[T]], Sequence[Any]],
    items: list[T],
    *,
    release: Callable[[], None] = release_cuda_cache,
    check: Callable[[], None] = lambda: None,
    job_id: str = "",
) -> list[Any]:
    """``predict(items)``, halving the batch on out-of-memory until one input is left."""
    try:
        return list(predict(items))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        release()
        if len(items) <= 1:
            raise ModelFailure(
                "out of memory on a single input, even alone: send a shorter input, a smaller "
                "max_length or max_new_tokens, or use a larger device"
            ) from exc
        half = len(items) // 2
        log.warning(
            "job %s: out of memory on a batch of %d; retrying as %d + %d",
            job_id,
            len(items),
            half,
            len(items) - half,
            extra={"job_id": job_id},
        )
    outputs: list[Any] = []
    for part in (items[:half], items[half:]):
        check()
        outputs += predict_splitting(predict, part, release=release, check=check, job_id=job_id)
    return outputs
