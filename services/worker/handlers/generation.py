"""What the generating handlers share: ``generate()`` arguments and seeded sampling.

Sampling draws from torch's global random generator, which the worker's
threads share. A sampling run therefore holds :data:`SAMPLING_LOCK` for its
whole ``generate()`` call, after seeding the generator with the job's
``seed`` if it gave one: the same seed, model and inputs give the same text
whatever else the worker runs. Greedy and beam search use no randomness and
take no lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from services.worker.handlers.base import Loaded
from shared.params import GenerationParams

SAMPLING_LOCK = threading.Lock()


def generate_kwargs(loaded: Loaded, params: GenerationParams) -> dict[str, Any]:
    """``params`` as ``generate()`` arguments, against the model's own defaults."""
    config = getattr(loaded.model, "generation_config", None)
    return params.generate_kwargs(model_samples=bool(getattr(config, "do_sample", False)))


@contextlib.contextmanager
def sampling(kwargs: dict[str, Any], seed: int | None) -> Iterator[None]:
    """Hold the sampling lock (and seed torch) around a ``generate()`` that samples."""
    if not kwargs.get("do_sample"):
        yield
        return
    with SAMPLING_LOCK:
        if seed is not None:
            import torch

            torch.manual_seed(seed)
        yield
