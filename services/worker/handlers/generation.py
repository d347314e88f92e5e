"""What the generating handlers share: ``generate()`` arguments and seeded sampling.

Sampling draws from torch's global random generator, which the worker's
threads share, and so does every batched pipeline call (its DataLoader draws a
seed). :data:`RANDOM` is a readers-writer lock over that generator: a sampling
``generate()`` holds it alone, after seeding it with the job's ``seed``;
other model calls share it with each other. The same seed, model and inputs
then give the same text whatever else the worker runs at the time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from services.worker.control import current
from services.worker.handlers.base import Loaded
from shared.params import GenerationParams


class RandomGuard:
    """A readers-writer lock; a waiting writer goes before new readers."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


RANDOM = RandomGuard()


def generate_kwargs(loaded: Loaded, params: GenerationParams) -> dict[str, Any]:
    """``params`` as ``generate()`` arguments, against the model's own defaults, with a
    stopping criterion that ends generation at the next token once the job (every job of a
    batch) is cancelled, past its time limit or superseded."""
    config = getattr(loaded.model, "generation_config", None)
    kwargs = params.generate_kwargs(model_samples=bool(getattr(config, "do_sample", False)))
    kwargs["stopping_criteria"] = current().stopping_criteria()
    return kwargs


@contextlib.contextmanager
def sampling(kwargs: dict[str, Any], seed: int | None) -> Iterator[None]:
    """Around a model call: alone (and seeded) if it samples, else shared with others."""
    if not kwargs.get("do_sample"):
        with RANDOM.shared():
            yield
        return
    with RANDOM.exclusive():
        if seed is not None:
            import torch

            torch.manual_seed(seed)
        yield
