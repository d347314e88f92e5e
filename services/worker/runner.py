"""One job message, from arrival to its terminal row: what the Celery task calls.

::

    message -> parse_job ──invalid──> row FAILED (created if the producer had no DB)
                  │
                  └─> claim: ensure row, start under a new lease
                         ├─ already terminal (a redelivery): nothing runs; ack
                         ├─ BUSY (a live worker runs it): wait until it ends or falls silent
                         ├─ claimed more than DELIVERY_LIMIT times: poison; FAILED, dead-lettered
                         ├─ claimed before (its worker died): runs alone (gate.py)
                         └─ handler: params -> decode -> predict (halved on OOM) -> encode
                                ├─ ok ──────────> SUCCEEDED with the result
                                ├─ JobError ────> FAILED with its message (timeout too)
                                ├─ cancelled ───> CANCELLED
                                ├─ superseded ──> nothing written: the job is not ours now
                                └─ a bug ───────> FAILED "internal error", worker goes on

Every terminal write holds the attempt's lease, so a result is written once and
only by the attempt that owns the job; the attempt log records how each ended.
Database writes are retried with backoff while the database is away; if it stays
away past ``db_retry_seconds`` the runner raises :class:`DatabaseUnavailable` and
the task hands the message back to the broker unacked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from services.worker import affinity, metrics
from services.worker.batching import LINGER_MOST, Batcher, params_key
from services.worker.control import JobControl, Superseded, current, running
from services.worker.gate import Gate
from services.worker.handlers import Handler, Loaded, handler_for
from services.worker.model_process import ModelProcess
from services.worker.oom import predict_splitting, release_cuda_cache
from services.worker.rows import Rows, job_id_of
from services.worker.supervisor import Supervisor
from services.worker.threads import PassThreads
from services.worker.training import TRAINING_TASKS
from shared import states
from shared.attempts import Ending
from shared.errors import (
    InvalidInput,
    JobCancelled,
    JobError,
    JobTimeout,
    PipeqError,
    TransientError,
)
from shared.jobs import JobRequest, parse_job
from shared.logs import job_logging
from shared.messages import check_json
from shared.queues import DELIVERY_LIMIT
from shared.registry import ModelSpec
from shared.settings import Settings
from shared.states import Outcome, State

log = logging.getLogger(__name__)

__all__ = ["JobRunner", "ModelSource", "Poisoned", "job_id_of"]

#: A job claimed more often than this never finished any attempt: its message kills workers.
POISON_AFTER = DELIVERY_LIMIT


class Poisoned(JobError):
    """The job's message killed its worker every time; the task dead-letters it."""

    code = "poison"


class ModelSource(Protocol):
    """What the runner needs of :class:`services.worker.registry.Models`."""

    def spec(self, alias: str) -> ModelSpec: ...

    def get(self, alias: str) -> Loaded: ...


class JobRunner:
    """Runs job messages against this worker's models."""

    def __init__(
        self,
        models: ModelSource,
        *,
        worker: str,
        settings: Settings,
        db_retry_seconds: float | None = None,
        handlers: Callable[[str], Handler[Any]] = handler_for,
        supervisor: Supervisor | None = None,
        release_memory: Callable[[], None] = release_cuda_cache,
        wait: Callable[[float], None] = time.sleep,
        gate: Gate | None = None,
        ack_claimed: Callable[[str], object] | None = None,
        batcher: Batcher | None = None,
        threads: PassThreads | None = None,
    ) -> None:
        self.models = models
        self.worker = worker
        self.settings = settings
        self.db_url = settings.resolved_database_url
        retry = settings.db_retry_seconds if db_retry_seconds is None else db_retry_seconds
        self.rows = Rows(self.db_url, worker=worker, settings=settings, retry_seconds=retry)
        self.handlers = handlers
        self.supervisor = supervisor or Supervisor(
            db_url=self.db_url, heartbeat_seconds=settings.heartbeat_seconds
        )
        self.release_memory = release_memory
        self._wait = wait
        self.gate = gate or Gate()
        #: Acks a message now (``early_ack.acknowledge``): training jobs, once claimed.
        self.ack_claimed = ack_claimed or (lambda _task_id: None)
        self.batcher = batcher or Batcher()
        #: Torch's threads for each pass (``threads.py``); by default torch's own, untouched.
        self.threads = threads or PassThreads(busy=None)

    # -- the lifecycle ---------------------------------------------------------------

    def run(
        self, raw: Any, *, fallback_id: str, queue: str = "unknown", redelivered: bool = True
    ) -> str:
        """Process one message; returns the job's final state (or what it found).

        ``redelivered``: the broker says the message was delivered before (or cannot say).
        Only then is the job's row read before its claim, to run a suspect alone from the
        start; a fresh message whose job turns out to have been claimed before is isolated
        once its claim lands (``Gate.alone``).
        """
        job_id = job_id_of(raw, fallback_id)
        with job_logging(job_id):
            return self._run(raw, job_id, fallback_id, queue, redelivered)

    def _run(self, raw: Any, job_id: str, fallback_id: str, queue: str, redelivered: bool) -> str:
        try:
            request = self.parse(raw, job_id)
        except JobError as exc:
            self.reject(job_id, raw, exc, queue=queue)
            metrics.job_ended(metrics.INVALID_TASK, State.FAILED.value)
            return State.FAILED.value
        with self.batcher.announce(request.model):  # a forming batch waits for it
            return self._run_parsed(request, fallback_id, redelivered)

    def _run_parsed(self, request: JobRequest, fallback_id: str, redelivered: bool) -> str:
        job_id = request.id or ""
        started, isolated = self.claim(request, redelivered=redelivered)
        if started.outcome is not Outcome.STARTED:
            log.info(
                "job %s: %s (%s), not run again",
                job_id,
                started.outcome.value,
                started.state,
                extra={"job_id": job_id},
            )
            return started.state.value if started.state else started.outcome.value
        if request.task in TRAINING_TASKS:  # hours long: the lease keeps it, not the broker
            self.ack_claimed(fallback_id)
        times = {"created_at": started.created_at, "started_at": started.started_at}
        try:
            state = self._run_started(request, started, isolated=isolated)
        except Poisoned:
            metrics.job_ended(request.task, State.FAILED.value, **times)
            raise
        finally:
            self.gate.leave(isolated)
        metrics.job_ended(request.task, state, **times)
        return state

    def _run_started(self, request: JobRequest, started: states.Started, *, isolated: bool) -> str:
        job_id, lease = request.id or "", started.lease or ""
        if started.attempt > POISON_AFTER:
            message = (
                f"poison message: started {started.attempt - 1} times and each time its worker "
                "stopped before the job ended (killed, crashed or out of memory); not run again"
            )
            self.rows.finish(job_id, lease, Ending.POISON, code="poison", message=message)
            raise Poisoned(message)
        limit = self.settings.time_limit(request.task, request.queue)
        control = JobControl(job_id, lease, time_limit=limit)
        # A job claimed before runs alone (gate.py); found out only now (a race): isolate now.
        late = started.attempt > 1 and not isolated
        alone = self.gate.alone(job_id) if late else contextlib.nullcontext()
        with self.supervisor.holding(control), alone, running(control):
            control.begin()
            try:
                return self._run_claimed(request, control)
            except TransientError:
                raise
            except Exception as exc:  # recording the outcome failed, not for the DB being away
                log.exception("job %s: could not record its outcome", job_id)
                message = f"internal error while recording the outcome: {type(exc).__name__}"
                return self.rows.finish(
                    job_id, lease, Ending.FAILED, code="internal_error", message=message
                )

    def _run_claimed(self, request: JobRequest, control: JobControl) -> str:
        job_id, lease = control.job_id, control.lease
        begun = time.perf_counter()

        def finish(ending: Ending, **outcome: Any) -> str:
            # Progress the supervisor has not written yet (a short run ends between two
            # heartbeats) lands with the outcome: a finished job shows its last step and loss.
            progress = control.progress if control.progress_changed else None
            return self.rows.finish(job_id, lease, ending, progress=progress, **outcome)

        try:
            result = self.execute(request, control)
            control.finish()  # no time limit on writing the outcome (the DB may be away)
        except JobCancelled:
            return finish(Ending.CANCELLED)
        except Superseded as exc:
            log.warning("job %s: %s", job_id, exc, extra={"job_id": job_id})
            return self.rows.finish(job_id, lease, Ending.SUPERSEDED)
        except JobTimeout as exc:
            return finish(Ending.TIMEOUT, code=exc.code, message=str(exc))
        except JobError as exc:
            return finish(Ending.FAILED, code=exc.code, message=str(exc))
        except Exception as exc:  # a bug: fail the job, keep the worker
            log.exception("job %s: internal error", job_id, extra={"job_id": job_id})
            message = f"internal error: {type(exc).__name__}: {exc}"
            return finish(Ending.FAILED, code="internal_error", message=message)
        log.info(
            "job %s: %s on %s in %.1f ms",
            job_id,
            request.task,
            request.model,
            (time.perf_counter() - begun) * 1000,
            extra={"job_id": job_id},
        )
        # The jobs of a batch end together: the first success waits for the others' (a
        # few ms at most) so that they commit as one statement (group_commit.py).
        together = control.batch_jobs
        linger = LINGER_MOST if together > 1 else 0.0
        return finish(Ending.SUCCEEDED, result=result, linger=linger, full=together)

    def parse(self, raw: Any, job_id: str) -> JobRequest:
        check_json(raw)
        size = self.rows.size_of(raw)
        if size > self.settings.max_message_bytes:
            raise InvalidInput(
                f"job is {size} bytes; the limit is {self.settings.max_message_bytes}"
            )
        if isinstance(raw, dict) and "id" not in raw:
            raw = {**raw, "id": job_id}
        return parse_job(raw)

    def claim(
        self, request: JobRequest, *, redelivered: bool = True
    ) -> tuple[states.Started, bool]:
        """Claim the job; while a live worker runs it (BUSY), wait for it to end or go silent.

        A STARTED claim returns holding a place in :attr:`gate`, exclusive (True) for a job
        claimed before (known so beforehand only for a ``redelivered`` message); the caller
        gives it back with ``gate.leave``.
        """
        job_id = request.id or ""
        patience = self.settings.time_limit(request.task, request.queue)
        give_up = time.monotonic() + patience + 2 * self.settings.lease_seconds
        poll = max(0.2, min(self.settings.lease_seconds / 6, 5.0))
        stale_after = timedelta(seconds=self.settings.lease_seconds)
        logged = False
        while True:
            suspect = redelivered and self.rows.claimed_before(job_id, stale_after=stale_after)
            isolated = self.gate.enter(alone=suspect, job_id=job_id)
            try:
                started = self.rows.claim(
                    request, stale_after=stale_after, linger=self.batcher.linger(request.model)
                )
            except BaseException:
                self.gate.leave(isolated)
                raise
            if started.outcome is Outcome.STARTED:
                return started, isolated
            self.gate.leave(isolated)
            if started.outcome is not Outcome.BUSY:
                return started, False
            if time.monotonic() > give_up:
                raise TransientError(f"job {job_id} is still held by a live worker")
            if not logged:
                log.info(
                    "job %s: running under another live attempt; waiting for it to end "
                    "or fall silent",
                    job_id,
                    extra={"job_id": job_id},
                )
                logged = True
            self._wait(poll)

    def execute(self, request: JobRequest, control: JobControl | None = None) -> Any:
        """Run the handler for ``request`` (no database, no Celery)."""
        control = control or JobControl(request.id or "", "")
        if request.task in TRAINING_TASKS:  # owns its model: no shared one, no batching
            from services.worker.training.job import fine_tune

            device = str(getattr(self.models, "device", "cpu"))
            return fine_tune(request, settings=self.settings, device=device, control=control)
        handler = self.handlers(request.task)
        spec = self.models.spec(request.model)
        if spec.task != request.task:
            raise InvalidInput(f"model {request.model!r} serves {spec.task}, not {request.task}")
        params = handler.params(spec, request.params)
        items, batched = handler.decode(request.inputs, params)
        control.check()

        def forward(batch: list[Any]) -> list[Any]:  # may carry other jobs' items too
            loaded = self.models.get(request.model)
            if isinstance(loaded.model, ModelProcess):  # splits and checks in its process
                return loaded.model.predict(
                    self.handlers, batch, params, control=current(), job_id=control.job_id
                )
            with affinity.widened():  # a pass, and torch's threads it starts, on every core
                threads = self.threads.set_for(lone=self.gate.running <= 1, model=request.model)
                began = time.perf_counter()
                outputs = predict_splitting(
                    lambda part: handler.predict(loaded, part, params),
                    batch,
                    release=self.release_memory,
                    check=current().check,  # the job's, or its batch's: all of whose jobs stopped
                    job_id=control.job_id,
                )
            self.threads.ran(request.model, threads, time.perf_counter() - began, len(batch))
            return outputs

        outputs, info = self.batcher.predict(
            request.model,
            items,
            forward,
            key=params_key(params),
            control=control,
            limits=spec.batching,
        )
        control.batch_jobs = info.jobs
        control.check()
        return handler.encode(outputs, params, batched)

    # -- rows (kept as methods: the consumer and the tests call them) ------------------

    def reject(self, job_id: str, raw: Any, exc: PipeqError, *, queue: str) -> None:
        """Fail a message that never became a valid job, creating its row if needed."""
        self.rows.reject(job_id, raw, exc, queue=queue)

    def finish_succeeded(self, job_id: str, result: Any, *, lease: str | None = None) -> str:
        return self.rows.finish(job_id, lease, Ending.SUCCEEDED, result=result)

    def finish_failed(self, job_id: str, code: str, message: str) -> str:
        return self.rows.finish(job_id, None, Ending.FAILED, code=code, message=message)

    def persist(self, write: Callable[[Session], Any]) -> Any:
        return self.rows.persist(write)
