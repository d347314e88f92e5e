"""Loaded models of one worker process, by alias: loaded once, shared, kept within a budget.

Lifecycle of a model in a worker:

- start: ``Models(...)`` checks every spec the worker serves
  (:func:`services.worker.loading.check_spec`: backend packages, placement), so
  a bad registry stops the worker before it takes a job. :meth:`Models.load_all`
  then loads them in registry order while they fit the memory budget; the rest
  load on first use.
- per job: :meth:`Models.get` returns a *handle* to the loaded model (a shallow
  copy of its :class:`Loaded`). The job holds the model for as long as it keeps
  the handle; the runner drops it when the job ends, and the model is then idle.
- budget (bytes of tensors, per worker and so per device): before a model
  loads, the least recently used idle models are evicted until its expected
  size fits (:mod:`services.worker.estimate` the first time, the measured size
  after). A held model is never evicted: if only held models stand in the way,
  the load waits for them, up to ``wait_seconds``, then fails its job with
  :class:`ModelFailure`. A model larger than the whole budget still loads, alone,
  with a warning. Every load and eviction is logged with its duration and bytes.

Thread-safe: jobs run on a thread pool. One condition (over a re-entrant lock)
guards the table; a model loads outside it, under a per-alias lock, so other
models keep serving while one loads and no model is ever loaded twice at once.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.worker import metrics
from services.worker.estimate import expected_bytes
from services.worker.handlers import Loaded, handler_for
from services.worker.loading import check_spec, model_device
from services.worker.memory import mib, placement, release_memory, rss_bytes, tensor_bytes
from services.worker.model_process import ModelProcess
from shared import finetuned
from shared.errors import ModelFailure, UnknownModel
from shared.registry import ModelSpec, Registry

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    loaded: Loaded
    bytes: int
    placement: dict[str, Any]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_used: float = field(default_factory=time.monotonic)
    holders: int = 0


class Models:
    """The models this process serves."""

    def __init__(
        self,
        registry: Registry,
        *,
        device: str,
        queues: tuple[str, ...],
        budget: int | None = None,
        wait_seconds: float = 120.0,
        store: Path | None = None,
    ) -> None:
        self.registry = registry
        self.store = store  # the model store, where fine-tuned aliases are found
        self.device = device
        self.queues = queues
        self.budget = budget
        self.wait_seconds = wait_seconds
        self._entries: dict[str, _Entry] = {}
        self._measured: dict[str, int] = {}
        self._reserved = 0
        self._cond = threading.Condition(threading.RLock())
        self._alias_locks: dict[str, threading.Lock] = {}
        # One load at a time per process: transformers 5's from_pretrained swaps
        # module-level functions while it runs, and two overlapping loads can leave
        # them swapped (later models then load with weights on the meta device).
        self._loading = threading.Lock()
        gpus = visible_gpus(device)
        for spec in registry.for_queues(queues):
            check_spec(spec, device=device, gpus=gpus)

    def spec(self, alias: str) -> ModelSpec:
        spec = self._fine_tuned(alias) if alias not in self.registry else self.registry.get(alias)
        if spec.queue not in self.queues:
            raise UnknownModel(
                f"model {alias!r} serves the {spec.queue} queue, "
                f"not this worker's ({', '.join(self.queues)})"
            )
        return spec

    def _fine_tuned(self, alias: str) -> ModelSpec:
        """An alias a fine-tune job made (``shared.finetuned``), read from the store on use."""
        spec = finetuned.find(self.store, alias) if self.store is not None else None
        if spec is None:
            return self.registry.get(alias)  # raises UnknownModel
        check_spec(spec, device=self.device, gpus=visible_gpus(self.device))
        return spec

    def load_all(self) -> list[str]:
        """Load the served models that fit the budget, in registry order; returns their aliases."""
        loaded = []
        for spec in self.registry.for_queues(self.queues):
            need = self.expected(spec)
            with self._cond:
                fits = self.budget is None or self.used + need <= self.budget
            if not fits:
                log.info(
                    "model %s (about %s) is past the budget; it loads on first use",
                    spec.alias,
                    mib(need),
                )
                continue
            self.get(spec.alias)  # the handle is dropped at once: the model stays, idle
            loaded.append(spec.alias)
        return loaded

    def get(self, alias: str) -> Loaded:
        """A handle to the loaded model of ``alias``, loading it (within the budget) if needed."""
        spec = self.spec(alias)
        with self._cond:
            if alias in self._entries:
                return self._hand_out(alias)
            alias_lock = self._alias_locks.setdefault(alias, threading.Lock())
        with alias_lock:
            with self._cond:
                if alias in self._entries:
                    return self._hand_out(alias)
            need = self.expected(spec)
            with self._cond:
                evicted = self._make_room(alias, need)
            self._release_evicted(evicted)
            try:
                with self._loading:
                    loaded = self._load(spec)
            finally:
                with self._cond:
                    self._reserved -= need
                    self._cond.notify_all()
            with self._cond:
                where = (
                    loaded.model.placement
                    if isinstance(loaded.model, ModelProcess)
                    else placement(loaded.model)
                )
                entry = _Entry(loaded, loaded.tensor_bytes, where)
                self._entries[alias] = entry
                self._measured[alias] = loaded.tensor_bytes
                self._log_load(spec, entry)
                evicted = self._trim(keep=alias)
                handle = self._hand_out(alias)
            self._release_evicted(evicted)
            return handle

    def evict(self, alias: str, *, reason: str = "asked") -> bool:
        """Unload ``alias`` now if it is loaded and no job holds it."""
        with self._cond:
            entry = self._entries.get(alias)
            if entry is None or entry.holders:
                return False
            lingering = self._evict(alias, reason)
        self._release_evicted([lingering])
        return True

    def expected(self, spec: ModelSpec) -> int:
        """Bytes ``spec`` will take: as measured at its last load, else as estimated."""
        return self._measured.get(spec.alias) or expected_bytes(spec)

    @property
    def used(self) -> int:
        with self._cond:
            return sum(entry.bytes for entry in self._entries.values())

    @property
    def loaded(self) -> dict[str, Loaded]:
        with self._cond:
            return {alias: entry.loaded for alias, entry in self._entries.items()}

    def held(self, alias: str) -> int:
        """How many handles to ``alias`` jobs hold now."""
        with self._cond:
            entry = self._entries.get(alias)
            return entry.holders if entry else 0

    def inventory(self) -> dict[str, Any]:
        """What this worker holds, JSON-safe: for ``pipeq models list`` (Celery remote control)."""
        now = time.monotonic()
        with self._cond:
            models = [
                {
                    "alias": alias,
                    "task": entry.loaded.spec.task,
                    "bytes": entry.bytes,
                    "load_seconds": round(entry.loaded.load_seconds, 3),
                    "loaded_at": entry.loaded_at.isoformat(),
                    "idle_seconds": round(now - entry.last_used, 1) if not entry.holders else 0.0,
                    "in_use": entry.holders,
                    **entry.placement,
                }
                for alias, entry in self._entries.items()
            ]
            return {
                "device": self.device,
                "budget": self.budget,
                "used": self.used,
                "models": models,
            }

    # -- under the lock ----------------------------------------------------------------

    def _hand_out(self, alias: str) -> Loaded:
        entry = self._entries[alias]
        entry.last_used = time.monotonic()
        entry.holders += 1
        handle = copy.copy(entry.loaded)
        weakref.finalize(handle, self._release, entry)
        return handle

    def _release(self, entry: _Entry) -> None:
        with self._cond:
            entry.holders -= 1
            entry.last_used = time.monotonic()
            self._cond.notify_all()

    def _make_room(self, alias: str, need: int) -> list[Callable[[], object]]:
        """Evict idle models until ``need`` more bytes fit, waiting on held ones; reserve them."""
        evicted: list[Callable[[], object]] = []
        deadline = time.monotonic() + self.wait_seconds
        while self.budget is not None and self.used + self._reserved + need > self.budget:
            victim = self._least_recently_used(exclude=alias)
            if victim is not None:
                evicted.append(self._evict(victim, f"least recently used; room for {alias}"))
                continue
            if not self._entries and not self._reserved:
                log.warning(
                    "model %s (about %s) is larger than the memory budget (%s) on its own",
                    alias,
                    mib(need),
                    mib(self.budget),
                )
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                busy = ", ".join(a for a, e in self._entries.items() if e.holders) or "loads"
                raise ModelFailure(
                    f"memory budget: no room for model {alias!r} (about {mib(need)}) within "
                    f"{mib(self.budget)}: held by running jobs ({busy}) for {self.wait_seconds:g} s"
                )
            self._cond.wait(remaining)
        self._reserved += need
        return evicted

    def _trim(self, *, keep: str) -> list[Callable[[], object]]:
        """After a load bigger than expected: evict idle models until back within budget."""
        evicted: list[Callable[[], object]] = []
        while self.budget is not None and self.used > self.budget:
            victim = self._least_recently_used(exclude=keep)
            if victim is None:
                if len(self._entries) > 1:
                    log.warning(
                        "memory budget exceeded while jobs hold models: %s of %s",
                        mib(self.used),
                        mib(self.budget),
                    )
                break
            evicted.append(self._evict(victim, f"least recently used; {keep} took more"))
        return evicted

    def _least_recently_used(self, *, exclude: str) -> str | None:
        idle = [
            (e.last_used, a) for a, e in self._entries.items() if not e.holders and a != exclude
        ]
        return min(idle)[1] if idle else None

    def _evict(self, alias: str, reason: str) -> Callable[[], object]:
        """Drop ``alias``'s entry; returns a weak reference to its model, dead if it was freed."""
        started = time.perf_counter()
        entry = self._entries.pop(alias)
        idle = time.monotonic() - entry.last_used
        size = entry.bytes
        try:
            model: Callable[[], object] = weakref.ref(entry.loaded.model)
        except TypeError:  # not a torch module: nothing to watch
            model = type(None)
        if isinstance(entry.loaded.model, ModelProcess):
            entry.loaded.model.close()  # its tensors go with its process
        del entry  # the last reference to the model: its tensors are freed here
        metrics.model_unloaded(alias)
        log.info(
            "evicted model %s (%s, idle %.1f s): %s of tensors freed in %.3f s; budget %s",
            alias,
            reason,
            idle,
            mib(size),
            time.perf_counter() - started,
            self._budget_line(),
            extra={"event": "model_evicted", "model": alias, "bytes": size, "reason": reason},
        )
        return model

    @staticmethod
    def _release_evicted(evicted: list[Callable[[], object]]) -> None:
        if evicted:
            release_memory(collect=any(model() is not None for model in evicted))

    # -- loading -----------------------------------------------------------------------

    def _load(self, spec: ModelSpec) -> Loaded:
        if spec.process:
            return self._start_process(spec)
        started = time.perf_counter()
        before = rss_bytes()
        loaded = handler_for(spec.task).load(spec, model_device(spec, self.device))
        loaded.load_seconds = time.perf_counter() - started
        loaded.tensor_bytes = tensor_bytes(loaded.model)
        loaded.extras.setdefault("rss_delta", max(rss_bytes() - before, 0))
        return loaded

    def _start_process(self, spec: ModelSpec) -> Loaded:
        device = model_device(spec, self.device)
        process = ModelProcess(spec, device)
        process.start()
        return Loaded(
            spec=spec,
            model=process,
            device=device,
            load_seconds=process.load_seconds,
            tensor_bytes=process.tensor_bytes,
            extras={"rss_delta": process.rss_bytes, "pid": process.pid},
        )

    def _log_load(self, spec: ModelSpec, entry: _Entry) -> None:
        loaded, where = entry.loaded, entry.placement
        metrics.model_loaded(
            spec.alias, seconds=loaded.load_seconds, tensor_bytes=loaded.tensor_bytes
        )
        rss = mib(loaded.extras["rss_delta"])
        pid = loaded.extras.get("pid")
        memory = f"its own process (pid {pid}), RSS {rss}" if pid else f"process RSS +{rss}"
        log.info(
            "loaded model %s (%s) on %s in %.2f s: tensors %s (%s, %s), %s; budget %s",
            spec.alias,
            spec.task,
            ",".join(where["devices"]),
            loaded.load_seconds,
            mib(loaded.tensor_bytes),
            "+".join(where["dtypes"]),
            where["quantization"],
            memory,
            self._budget_line(),
            extra={
                "event": "model_loaded",
                "model": spec.alias,
                "load_seconds": loaded.load_seconds,
                "tensor_bytes": loaded.tensor_bytes,
            },
        )

    def _budget_line(self) -> str:
        if self.budget is None:
            return f"{mib(self.used)} in use, no limit"
        return f"{mib(self.used)} of {mib(self.budget)} in use"


def visible_gpus(device: str) -> int:
    """How many GPUs this worker sees (after ``CUDA_VISIBLE_DEVICES``); 0 on a CPU worker."""
    if device == "cpu":
        return 0
    import torch

    return int(torch.cuda.device_count())
