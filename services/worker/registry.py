"""Loaded models of one worker process, by alias: each loaded once, then shared.

Lifecycle: the worker calls :meth:`Models.load_all` for its queues at start,
which logs each model's load time and memory; jobs then call :meth:`Models.get`.
An alias registered after start (or not preloaded) is loaded on first use, under
a lock, so two threads never load the same model twice.
"""

from __future__ import annotations

import logging
import threading
import time

from services.worker.handlers import Loaded, handler_for
from services.worker.memory import mib, rss_bytes, tensor_bytes
from shared.errors import UnknownModel
from shared.registry import ModelSpec, Registry

log = logging.getLogger(__name__)


class Models:
    """The models this process serves."""

    def __init__(self, registry: Registry, *, device: str, queues: tuple[str, ...]) -> None:
        self.registry = registry
        self.device = device
        self.queues = queues
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.Lock()
        self._alias_locks: dict[str, threading.Lock] = {}

    def spec(self, alias: str) -> ModelSpec:
        spec = self.registry.get(alias)
        if spec.queue not in self.queues:
            raise UnknownModel(
                f"model {alias!r} serves the {spec.queue} queue, "
                f"not this worker's ({', '.join(self.queues)})"
            )
        return spec

    def load_all(self) -> list[Loaded]:
        return [self.get(spec.alias) for spec in self.registry.for_queues(self.queues)]

    def get(self, alias: str) -> Loaded:
        loaded = self._loaded.get(alias)
        if loaded is not None:
            return loaded
        with self._lock:
            alias_lock = self._alias_locks.setdefault(alias, threading.Lock())
        with alias_lock:
            if alias in self._loaded:
                return self._loaded[alias]
            loaded = self._load(self.spec(alias))
            self._loaded[alias] = loaded
            return loaded

    def _load(self, spec: ModelSpec) -> Loaded:
        before = rss_bytes()
        started = time.perf_counter()
        loaded = handler_for(spec.task).load(spec, self.device)
        loaded.load_seconds = time.perf_counter() - started
        loaded.tensor_bytes = tensor_bytes(loaded.model)
        log.info(
            "loaded model %s (%s) on %s in %.2f s: tensors %s, process RSS +%s",
            spec.alias,
            spec.task,
            self.device,
            loaded.load_seconds,
            mib(loaded.tensor_bytes),
            mib(max(rss_bytes() - before, 0)),
            extra={
                "model": spec.alias,
                "load_seconds": loaded.load_seconds,
                "tensor_bytes": loaded.tensor_bytes,
            },
        )
        return loaded

    @property
    def loaded(self) -> dict[str, Loaded]:
        return dict(self._loaded)
