"""What a running job asks its worker: "should I stop?", and where it reports progress.

A Python thread cannot be killed, so a job that is cancelled, runs past its time
limit, or loses its lease is *asked* to stop: the worker's supervisor (and the
job's own deadline) set :class:`JobControl`'s stop reason, and the job raises it
at its next :meth:`~JobControl.check`. The runner checks between the phases of a
job (decode, each forward pass, encode); long handlers check inside, through
:func:`current`, without importing Celery or the database:

- generation: ``model.generate(..., stopping_criteria=current().stopping_criteria())``
  ends at the next token once the job should stop;
- training: ``Trainer(callbacks=[current().trainer_callback()])`` stops at the
  next step and reports ``{"step", "max_steps", "epoch"}`` as the job's progress;
- loops: ``current().check()`` (or ``current().sleep(seconds)``).

A handler that never checks still ends right: the watchdog fails the row at the
deadline and the late result is discarded.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.errors import JobCancelled, JobTimeout, PipeqError


class Superseded(PipeqError):
    """The job is no longer this attempt's (it ended elsewhere, or another took it over)."""

    code = "superseded"


class JobControl:
    """The stop flag, deadline and progress of one running attempt."""

    def __init__(
        self,
        job_id: str,
        lease: str,
        *,
        time_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.lease = lease
        self.time_limit = time_limit
        self._clock = clock
        self.begin()
        self._stopped = threading.Event()
        self._reason: PipeqError | None = None
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []
        self.progress: dict[str, Any] | None = None
        self.progress_changed = False
        self.finished = False
        #: Jobs in the batch whose forward pass gave this job its outputs (1: it ran alone).
        self.batch_jobs = 1

    def begin(self) -> None:
        """Start the clock: the time limit counts from here (not from a wait to run alone)."""
        self.started = self._clock()
        self.deadline = None if self.time_limit is None else self.started + self.time_limit

    @property
    def reason(self) -> PipeqError | None:
        return self._reason

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set() or self.overdue()

    def time_left(self) -> float | None:
        """Seconds until the deadline (None: no time limit, or the work is done)."""
        if self.finished or self.deadline is None:
            return None
        return max(0.0, self.deadline - self._clock())

    def overdue(self, now: float | None = None) -> bool:
        """Past the deadline with the job's work not yet done."""
        if self.finished or self.deadline is None:
            return False
        return (now or self._clock()) > self.deadline

    def finish(self) -> None:
        """The job's work is done in time: only its outcome is left to write."""
        self.check()
        self.finished = True

    def timeout_error(self) -> JobTimeout:
        return JobTimeout(
            f"the job ran past its time limit of {self.time_limit:g} s and was stopped"
        )

    def stop(self, reason: PipeqError) -> bool:
        """Ask the job to stop with ``reason``; the first reason given wins."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            wakers = list(self._wakers)
        self._stopped.set()
        for wake in wakers:
            wake()
        return True

    @contextlib.contextmanager
    def waking(self, wake: Callable[[], None]) -> Iterator[None]:
        """Call ``wake`` when the job is asked to stop while the block runs, from the thread
        that asks: a thread waiting on something else sleeps without polling the stop flag.
        ``wake`` must not need a lock that the caller of :meth:`stop` (or :meth:`check`)
        may hold."""
        with self._lock:
            self._wakers.append(wake)
        try:
            yield
        finally:
            with self._lock:
                self._wakers.remove(wake)

    def check(self) -> None:
        """Raise the stop reason (cancelled, timed out, superseded) if there is one."""
        if self.overdue():
            self.stop(self.timeout_error())
        if self._reason is not None:
            raise self._reason

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once (and raising) if the job is asked to stop."""
        end = self._clock() + seconds
        while (left := end - self._clock()) > 0:
            self.check()
            self._stopped.wait(min(left, 0.05))
        self.check()

    def report(self, progress: dict[str, Any]) -> None:
        """Record progress; the supervisor writes it with the next heartbeat."""
        self.progress = progress
        self.progress_changed = True

    def stopping_criteria(self) -> Any:
        """A ``transformers.StoppingCriteriaList`` that ends generation once the job should stop."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        control = self

        class StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                import torch

                stop = control.stopping
                return torch.full(
                    (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
                )

        return StoppingCriteriaList([StopWhenAsked()])

    def trainer_callback(self) -> Any:
        """A ``transformers.TrainerCallback``: reports steps, stops training when asked."""
        from transformers import TrainerCallback

        control = self

        class StopWhenAsked(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, ctl: Any, **kwargs: Any) -> Any:
                control.report(
                    {"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch}
                )
                if control.stopping:
                    ctl.should_training_stop = True
                return ctl

        return StopWhenAsked()


class _Unsupervised(JobControl):
    """What :func:`current` returns outside a job (a handler under test): never stops."""

    def stop(self, reason: PipeqError) -> bool:
        return False


_current: contextvars.ContextVar[JobControl | None] = contextvars.ContextVar(
    "pipeq_job_control", default=None
)


def current() -> JobControl:
    """The control of the job this thread runs (a never-stopping one outside a job)."""
    return _current.get() or _Unsupervised("", "")


@contextlib.contextmanager
def running(control: JobControl) -> Iterator[JobControl]:
    """Make ``control`` this thread's :func:`current` while the job runs."""
    token = _current.set(control)
    try:
        yield control
    finally:
        _current.reset(token)


def cancelled() -> JobCancelled:
    return JobCancelled("cancelled by user")
