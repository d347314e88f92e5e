"""A model served from a process of its own (registry: ``process = true``).

In the worker a model's forward pass shares one interpreter, and so one GIL, with
the job threads, the group commit and Celery's consumer: torch lets the GIL go
around each operation and must win it back after, behind them. For a small model
that is most of its time (a batch of 32 tiny texts: 5.6 ms alone, 33-54 ms in a
busy worker). A model whose entry says ``process = true`` is loaded in a spawned
child process instead, and each forward pass (a batch, halved on out of memory
there) is sent to it down a pipe; the worker's thread waits for the answer
without the GIL.

What stays as it was, by construction:

- the worker's memory budget counts the child's tensors (measured there) like any
  model's, and evicting the model ends its process;
- a job asked to stop (cancel, time limit, lost lease) stops the child's pass at
  its next check: generation at the next token, a split batch between halves. A
  pass that does not stop within :data:`GRACE_SECONDS` of the stop is killed with
  its process, which a thread could never be, and the next pass starts a new one;
- a child that dies in a pass (a crash in native code on some input) fails that
  pass with :class:`ModelFailure`; the batcher then runs the batch's jobs alone,
  each in a new process, so that only the job at fault fails and the worker
  lives on;
- handlers are the same objects: the child looks its handler up through the
  runner's own lookup (``handlers``, sent with each pass), so a fault-injecting
  test worker injects in the child too.

The child is spawned, never forked: a fork of a process that has touched CUDA is
unusable, and the child imports only what the model needs.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from services.worker import affinity
from services.worker.control import JobControl, running
from shared.errors import JobError, ModelFailure
from shared.registry import ModelSpec

log = logging.getLogger(__name__)

#: How often the waiting thread looks at its job's stop flag and the child's life.
POLL_SECONDS = 0.05
#: How long a pass may go on after its stop before its process is killed.
GRACE_SECONDS = 5.0

Handlers = Callable[[str], Any]


class ModelProcess:
    """The worker's side: one child serving ``spec``; one pass at a time."""

    def __init__(self, spec: ModelSpec, device: str, *, grace_seconds: float = GRACE_SECONDS):
        self.spec = spec
        self.device = device
        self.grace_seconds = grace_seconds
        self.tensor_bytes = 0
        self.rss_bytes = 0
        self.load_seconds = 0.0
        self.placement: dict[str, Any] = {}
        self.pid: int | None = None
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._stop: Any = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Spawn the child and wait for its model to load (its error, if it fails, is raised)."""
        with self._lock:
            self._start()

    def predict(
        self,
        handlers: Handlers,
        items: list[Any],
        params: Any,
        *,
        control: JobControl,
        job_id: str = "",
    ) -> list[Any]:
        """One forward pass over ``items`` in the child (a new child if the last one died)."""
        with self._lock:
            if not self.alive:
                self._start()
            assert self._conn is not None and self._stop is not None
            self._stop.clear()
            self._conn.send(("predict", handlers, items, params, job_id))
            reply = self._wait(control, during="during this job's forward pass")
        kind = reply[0]
        if kind == "ok":
            outputs: list[Any] = reply[1]
            return outputs
        if kind == "stopped":
            control.check()  # raises the job's (or batch's) reason
            raise RuntimeError("the forward pass stopped unasked")
        raise _rebuilt(reply)

    def close(self) -> None:
        """End the child (the model's memory goes with it)."""
        with self._lock:
            self._end(kill=False)

    # -- under the lock ----------------------------------------------------------------

    def _start(self) -> None:
        self._end(kill=True)
        parent, child = self._context.Pipe()
        stop = self._context.Event()
        process = self._context.Process(
            target=serve,
            args=(child, stop, self.spec, self.device, logging.getLogger().level),
            name=f"pipeq-model-{self.spec.alias}",
            daemon=True,
        )
        started = time.perf_counter()
        with affinity.widened():  # the child inherits this thread's cores: all of them
            process.start()
        child.close()
        self._process, self._conn, self._stop = process, parent, stop
        reply = self._wait(None, during="while loading the model")
        if reply[0] != "loaded":
            self._end(kill=True)
            raise _rebuilt(reply)
        info = reply[1]
        self.pid = process.pid
        self.tensor_bytes = info["tensor_bytes"]
        self.rss_bytes = info["rss_bytes"]
        self.placement = info["placement"]
        self.load_seconds = time.perf_counter() - started

    def _wait(self, control: JobControl | None, *, during: str) -> tuple[Any, ...]:
        """The child's answer; a stop is passed on, a pass past its grace killed."""
        assert self._conn is not None and self._process is not None
        stopped_at: float | None = None
        while True:
            if stopped_at is None and control is not None and control.stopping:
                stopped_at = time.monotonic()
                self._stop.set()
            if stopped_at is not None and time.monotonic() - stopped_at > self.grace_seconds:
                log.warning(
                    "model %s: a pass went on %g s after its job stopped; its process "
                    "(pid %s) is killed, the next pass starts a new one",
                    self.spec.alias,
                    self.grace_seconds,
                    self._process.pid,
                )
                self._end(kill=True)
                return ("stopped",)
            try:
                if self._conn.poll(POLL_SECONDS):
                    reply: tuple[Any, ...] = self._conn.recv()
                    return reply
            except (EOFError, OSError):
                return self._died(during)
            if not self._process.is_alive() and not self._conn.poll(0):
                return self._died(during)

    def _died(self, during: str) -> tuple[Any, ...]:
        assert self._process is not None
        self._process.join(5)
        code = self._process.exitcode
        self._end(kill=True)
        log.error("model %s: its process died (exit code %s)", self.spec.alias, code)
        return (
            "job_error",
            ModelFailure.code,
            f"the process serving model {self.spec.alias!r} died (exit code {code}) {during}",
        )

    def _end(self, *, kill: bool) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = self._stop = None
        if conn is not None:
            if not kill:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("close",))
            conn.close()
        if process is not None:
            process.join(0 if kill else 10)
            if process.is_alive():
                process.kill()
                process.join(5)


class RemoteJobError(JobError):
    """A job error raised in the child that could not travel as itself."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _rebuilt(reply: tuple[Any, ...]) -> BaseException:
    kind = reply[0]
    if kind == "error":
        error: BaseException = reply[1]
        return error
    if kind == "job_error":
        return RemoteJobError(reply[1], reply[2])
    if kind == "bug":
        name, message = reply[1], reply[2]
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception):
            return builtin(message)
        return RuntimeError(f"{name}: {message}")
    return RuntimeError(f"unexpected answer from a model process: {kind!r}")


def _portable(exc: BaseException) -> tuple[Any, ...]:
    """``exc`` as it can cross the pipe: itself if it survives pickling, else its gist."""
    try:
        if type(pickle.loads(pickle.dumps(exc))) is type(exc):
            return ("error", exc)
    except Exception:
        pass
    if isinstance(exc, JobError):
        return ("job_error", exc.code, str(exc))
    return ("bug", type(exc).__name__, str(exc))


# -- the child ---------------------------------------------------------------------------


class _Stopped(Exception):
    """The worker asked the pass to stop."""


class _Flag(JobControl):
    """The child's :func:`~services.worker.control.current`: stops when the worker says so."""

    def __init__(self, stop: Any) -> None:
        super().__init__("", "")
        self._flag = stop

    @property
    def stopping(self) -> bool:
        return bool(self._flag.is_set())

    def check(self) -> None:
        if self._flag.is_set():
            raise _Stopped()


def serve(conn: Connection, stop: Any, spec: ModelSpec, device: str, level: int) -> None:
    """The child's life: load the model, then answer passes until closed or orphaned."""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)-5s model process {spec.alias} (pid %(process)d): "
        "%(message)s",
    )
    from services.worker.handlers import handler_for
    from services.worker.memory import freeze_heap, placement, rss_bytes, tensor_bytes

    try:
        loaded = handler_for(spec.task).load(spec, device)
        info = {
            "tensor_bytes": tensor_bytes(loaded.model),
            "placement": placement(loaded.model),
            "rss_bytes": rss_bytes(),
        }
    except BaseException as exc:
        conn.send(_portable(exc))
        return
    freeze_heap()
    conn.send(("loaded", info))
    control = _Flag(stop)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the worker is gone
            return
        if message[0] == "close":
            return
        _kind, handlers, items, params, job_id = message
        try:
            with running(control):
                outputs = _predict(handlers(spec.task), loaded, items, params, control, job_id)
            # A generation cut short by the stop returns early: its outputs are not the job's.
            reply: tuple[Any, ...] = ("stopped",) if control.stopping else ("ok", outputs)
        except _Stopped:
            reply = ("stopped",)
        except BaseException as exc:
            reply = _portable(exc)
        try:
            conn.send(reply)
        except Exception as exc:  # outputs that do not pickle: a bug, not a dead child
            conn.send(("bug", "RuntimeError", f"the pass's outputs could not be sent: {exc}"))


def _predict(
    handler: Any, loaded: Any, items: list[Any], params: Any, control: _Flag, job_id: str
) -> list[Any]:
    from services.worker.oom import predict_splitting

    return predict_splitting(
        lambda part: handler.predict(loaded, part, params),
        items,
        check=control.check,
        job_id=job_id,
    )
