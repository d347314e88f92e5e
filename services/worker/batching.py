"""Jobs for the same model that wait together run as one forward pass.

Each job keeps its own thread (one of the pool's), its own claim, lease, state,
ack and error; only the forward pass is shared::

    task thread: parse -> announce(model) -> claim -> params, decode
        -> Batcher.predict: join the model's line; the first free thread leads:
             collect jobs with the same model and parameters while more are on the way
             (announced, not yet in line), up to max_size items, at most max_wait;
             nothing on the way (a lone job): run at once, no wait
           -> one forward pass (halved on OOM) -> each job gets its own outputs
        -> encode, terminal row, ack (in the job's own thread)

One batch per model runs at a time, always on the model's own forward thread:
jobs that arrive meanwhile queue up and form the next one, so a busy worker
batches without waiting at all. A forward pass on the same long-lived thread each
time is faster than one on whichever pool thread leads (MiniLM, one text, 2-core
CPU: 11.2 ms against 14.6 ms; torch's thread team and the thread's memory stay
warm). A batch whose jobs all stopped but whose pass does not return leaves that
thread to it: the next batch gets a new one. A job that is
cancelled or runs past its time limit while in line leaves it on its own. Jobs in line
sleep until something concerns them: a stop wakes them through ``JobControl.waking``,
never a poll (a 50 ms poll of every waiting job's stop flag cost a 2,000-job MiniLM burst
24,000 wake-ups, 12 a job). If a
batch of several jobs fails (an input the handler did not catch), each job is run
again alone, so that only the job at fault fails.

Batching is off for a model whose ``batch.max_size`` is 1: its jobs then call
the model in their own threads, concurrently, as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.worker import metrics
from services.worker.control import JobControl, cancelled, running
from shared.errors import PipeqError
from shared.registry import BatchLimits

log = logging.getLogger(__name__)

#: The longest a job in line sleeps unwoken: it is woken when it or a job of a running batch
#: is asked to stop, and at its own deadline, but a running batch's jobs that run past their
#: time limits are only noticed (freeing the model, see ``_Line.free``) at such a look.
LOOK_SECONDS = 1.0

#: The longest a claim lingers (``Batcher.linger``): other jobs' writes queue behind it.
LINGER_MOST = 0.02

Run = Callable[[list[Any]], list[Any]]


@dataclass(frozen=True)
class BatchInfo:
    """The batch a job ran in: how many jobs and items, how long its leader waited."""

    number: int
    jobs: int
    items: int
    waited_ms: float


@dataclass
class _Entry:
    key: Hashable
    items: list[Any]
    control: JobControl
    #: Wakes this job's thread alone (over its line's lock): its batch is done, or it may lead.
    wake: threading.Condition
    outputs: list[Any] | None = None
    error: BaseException | None = None
    batch: BatchInfo | None = None
    taken: bool = False
    done: bool = False


@dataclass
class _Line:
    """The jobs of one model: waiting in line, announced and on their way, or running.

    ``cond`` wakes the leader forming a batch (a job joined the line, or one on its way
    gave up); each waiting job has a condition of its own over the same lock, so a change
    wakes the threads it concerns, not the whole line (with 64 jobs waiting, waking them
    all at each arrival cost a few thousand thread switches a batch).
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(init=False)
    waiting: list[_Entry] = field(default_factory=list)
    coming: int = 0
    leading: bool = False
    running: list[list[_Entry]] = field(default_factory=list)
    #: The thread the model's forward passes run on (made when the first batch runs).
    thread: ThreadPoolExecutor | None = None
    #: The model's batch limits, as its last job gave them.
    limits: BatchLimits | None = None
    #: When the running pass began, and how long the last one took (clock seconds).
    pass_began: float = 0.0
    pass_seconds: float | None = None

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def free(self) -> bool:
        """No batch forming, and none running but abandoned ones (every job in them stopped:
        a stuck forward pass must not hold the model's other jobs for ever)."""
        return not self.leading and all(
            all(entry.control.stopping for entry in batch) for batch in self.running
        )


class Batcher:
    """Per-model lines of jobs waiting for a forward pass; see the module's docstring."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lines: dict[str, _Line] = {}
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._announced = threading.local()

    def _line(self, model: str) -> _Line:
        with self._lock:
            return self._lines.setdefault(model, _Line())

    @contextlib.contextmanager
    def announce(self, model: str) -> Iterator[None]:
        """Count this thread's job as on its way to ``model``'s line until it joins it (or
        leaves without a forward pass): a leader waits for announced jobs, and only for them."""
        line = self._line(model)
        with line.cond:
            line.coming += 1
        self._announced.model = model
        try:
            yield
        finally:
            self._arrived(model)

    def _arrived(self, model: str) -> None:
        if getattr(self._announced, "model", None) != model:
            return
        self._announced.model = None
        line = self._line(model)
        with line.cond:
            line.coming -= 1
            line.cond.notify()  # the leader, if it waits for this job

    def linger(self, model: str) -> float:
        """How long a job for ``model`` may let its claim wait for other jobs' claims to
        commit with it (``GroupCommit.run``), in seconds: while one of the model's forward
        passes runs, which the job will wait for anyway, what that pass has left if it takes
        as long as the last one did (the model's ``max_wait`` before any pass ended), at most
        :data:`LINGER_MOST`; else 0."""
        line = self._lines.get(model)
        if line is None or not line.running or line.limits is None:
            return 0.0
        if line.pass_seconds is None:
            return min(line.limits.max_wait_ms / 1000, LINGER_MOST)
        left = line.pass_began + line.pass_seconds - self._clock()
        return max(0.0, min(left, LINGER_MOST))

    def predict(
        self,
        model: str,
        items: list[Any],
        run: Run,
        *,
        key: Hashable,
        control: JobControl,
        limits: BatchLimits,
    ) -> tuple[list[Any], BatchInfo]:
        """This job's outputs for ``items``, computed in a batch with other jobs of the same
        ``model`` and ``key`` (the job's parameters). ``run`` is the forward pass."""
        line = self._line(model)
        line.limits = limits
        entry = _Entry(key, list(items), control, threading.Condition(line.lock))
        self._arrived(model)
        if limits.max_size <= 1:
            return self._run_alone(model, entry, run)

        def stopped() -> None:  # from the thread that stops the job: see the module's docstring
            with line.cond:
                entry.wake.notify()  # it leaves the line, if still in it
                _wake_first(line)  # its batch may no longer hold the model

        batch: list[_Entry] | None = None
        with control.waking(stopped):
            with line.cond:
                line.waiting.append(entry)
                line.cond.notify()  # the leader
                while not entry.done:
                    if not entry.taken and control.stopping:
                        line.waiting.remove(entry)
                        _wake_first(line)  # it may lead now
                        break
                    if line.free() and line.waiting[0] is entry:  # the oldest leads
                        batch, waited = self._collect(line, entry, limits)
                        break
                    entry.wake.wait(_nap(control))
                else:
                    return self._result(entry)
            if batch is None:  # it left the line (not under the lock: check may stop the job)
                control.check()  # raises the stop reason
                raise AssertionError("a job left the line without a stop reason")
            self._run_batch(model, line, batch, run, waited)
        return self._result(entry)

    def _run_alone(self, model: str, entry: _Entry, run: Run) -> tuple[list[Any], BatchInfo]:
        metrics.observe_batch(model, 1)
        entry.outputs = run(entry.items)
        entry.batch = BatchInfo(next(self._numbers), 1, len(entry.items), 0.0)
        return self._result(entry)

    def _collect(
        self, line: _Line, leader: _Entry, limits: BatchLimits
    ) -> tuple[list[_Entry], float]:
        """As the leader (lock held): wait while jobs are on their way and the batch is not
        full, at most ``max_wait``; then take the batch out of the line."""
        line.leading = True
        began = self._clock()
        deadline = began + limits.max_wait_ms / 1000
        while True:
            batch, full = self._select(line, leader, limits.max_size)
            left = deadline - self._clock()
            if full or line.coming <= 0 or left <= 0:
                break
            line.cond.wait(left)
        for entry in batch:
            entry.taken = True
            line.waiting.remove(entry)
        line.running.append(batch)
        return batch, (self._clock() - began) * 1000

    @staticmethod
    def _select(line: _Line, leader: _Entry, max_size: int) -> tuple[list[_Entry], bool]:
        """The leader, then jobs with its key in arrival order, while their items fit."""
        batch, size = [leader], len(leader.items)
        for entry in line.waiting:
            if entry is leader or entry.key != leader.key or entry.control.stopping:
                continue
            if size + len(entry.items) > max_size:
                return batch, True
            batch.append(entry)
            size += len(entry.items)
        return batch, size >= max_size

    def _run_batch(
        self, model: str, line: _Line, batch: list[_Entry], run: Run, waited: float
    ) -> None:
        items = [item for entry in batch for item in entry.items]
        info = BatchInfo(next(self._numbers), len(batch), len(items), waited)
        metrics.observe_batch(model, info.jobs)
        with line.cond:
            line.leading = False  # the next batch may form while this one runs; not start
            thread = self._thread(model, line, batch)
        try:
            # On the model's thread, with this job's context (its log lines, its control).
            context = contextvars.copy_context()
            began = line.pass_began = self._clock()
            thread.submit(context.run, self._forward, batch, items, run).result()
            line.pass_seconds = self._clock() - began
            log.info(
                "batch %d: %d jobs, %d items, waited %.1f ms, forward %.1f ms (jobs %s)",
                info.number,
                info.jobs,
                info.items,
                info.waited_ms,
                line.pass_seconds * 1000,
                ",".join(entry.control.job_id for entry in batch),
            )
        finally:
            with line.cond:
                for entry in batch:
                    if entry.outputs is None and entry.error is None:
                        entry.error = RuntimeError("the batch stopped before its outputs")
                    entry.batch = info
                    entry.done = True
                    entry.wake.notify()
                line.running.remove(batch)
                line.leading = False
                _wake_first(line)  # the next batch's leader

    @staticmethod
    def _thread(model: str, line: _Line, batch: list[_Entry]) -> ThreadPoolExecutor:
        """The model's forward thread (lock held); a new one if an abandoned batch holds it."""
        if line.thread is not None and any(other is not batch for other in line.running):
            log.warning("model %s: a batch of stopped jobs has not returned; new thread", model)
            line.thread.shutdown(wait=False)
            line.thread = None
        if line.thread is None:
            line.thread = ThreadPoolExecutor(1, thread_name_prefix=f"pipeq-forward-{model}")
        return line.thread

    @staticmethod
    def _forward(batch: list[_Entry], items: list[Any], run: Run) -> None:
        control = batch[0].control if len(batch) == 1 else BatchControl(batch)
        try:
            with running(control):
                outputs = run(items)
            if len(outputs) != len(items):
                raise RuntimeError(f"{len(outputs)} outputs for {len(items)} inputs")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            log.warning("a batch of %d jobs failed (%s); running each alone", len(batch), exc)
            for entry in batch:
                try:
                    entry.control.check()
                    with running(entry.control):
                        entry.outputs = run(entry.items)
                except Exception as alone:
                    entry.error = alone
            return
        start = 0
        for entry in batch:
            entry.outputs = outputs[start : start + len(entry.items)]
            start += len(entry.items)

    @staticmethod
    def _result(entry: _Entry) -> tuple[list[Any], BatchInfo]:
        if entry.error is not None:
            raise entry.error
        assert entry.outputs is not None and entry.batch is not None
        return entry.outputs, entry.batch


def _nap(control: JobControl) -> float:
    """How long a job in line sleeps unless woken: see :data:`LOOK_SECONDS`."""
    left = control.time_left()
    return LOOK_SECONDS if left is None else min(left, LOOK_SECONDS)


def _wake_first(line: _Line) -> None:
    """Wake the oldest job in line (lock held): it leads the next batch once the line is free."""
    if line.waiting:
        line.waiting[0].wake.notify()


def params_key(params: Any) -> Hashable:
    """Jobs batch together only with the same parameters, the ones they set included
    (a handler may read ``model_fields_set``); a seeded sampling job runs alone."""
    if getattr(params, "seed", None) is not None:
        return object()
    dump = params.model_dump_json() if hasattr(params, "model_dump_json") else repr(params)
    return (dump, frozenset(getattr(params, "model_fields_set", ())))


class BatchControl(JobControl):
    """What a batch's forward pass sees as :func:`~services.worker.control.current`: it
    stops only once every job in it should stop, and reports progress to all of them."""

    def __init__(self, batch: list[_Entry]) -> None:
        super().__init__("batch", "")
        self.controls = [entry.control for entry in batch]

    @property
    def stopping(self) -> bool:
        return all(control.stopping for control in self.controls)

    def check(self) -> None:
        if self.stopping:
            reasons = [control.reason for control in self.controls]
            raise next((r for r in reasons if isinstance(r, PipeqError)), cancelled())

    def report(self, progress: dict[str, Any]) -> None:
        for control in self.controls:
            control.report(progress)
