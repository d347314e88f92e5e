"""Fault injection for tests and ``make chaos``, through the runner's ``handlers`` seam.

:class:`FaultyHandler` wraps a real handler; a text input that starts with
``fault:`` makes it misbehave as a real model might, and every other input goes
to the real handler untouched:

- ``fault:exit``          the process dies at once (``os._exit``: no cleanup, like SIGKILL)
- ``fault:sleep=S``       a forward pass stuck for S seconds (never checks for a stop)
- ``fault:wait=S``        a long job that checks for a stop while it waits S seconds
- ``fault:oom>N``         CUDA-style out of memory whenever the batch has more than N items
- ``fault:raise``         a bug in the handler (RuntimeError)
- ``fault:progress=N``    reports progress (step N of N) and returns at once

``python -m tests.faults [pipeq worker options]`` starts a real ``pipeq worker``
whose handlers are all wrapped so (the integration tests and ``make chaos`` use it).
:class:`EchoHandler` and :class:`FakeModels` let unit tests run the runner with no model.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from services.worker.control import current
from services.worker.handlers import Handler, Loaded, handler_for
from services.worker.handlers.base import text_items
from shared.errors import UnknownModel
from shared.params import TaskParams
from shared.registry import ModelSpec

PREFIX = "fault:"
#: The command line of a fault-injecting worker (``pipeq worker``'s options follow).
WORKER_COMMAND = [sys.executable, "-m", "tests.faults"]


class OutOfMemoryError(RuntimeError):
    """Named as torch's is: pipeq recognises out-of-memory errors by name."""


def _fault(items: list[Any]) -> str | None:
    for item in items:
        if isinstance(item, str) and item.startswith(PREFIX):
            return item[len(PREFIX) :]
    return None


class FaultyHandler(Handler[Any]):
    """``inner``, except for inputs that ask for a fault."""

    def __init__(self, inner: Handler[Any]) -> None:
        self.inner = inner
        self.task = inner.task  # type: ignore[misc]

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        return self.inner.load(spec, device)

    def params(self, spec: ModelSpec, raw: dict[str, Any]) -> Any:
        return self.inner.params(spec, raw)

    def decode(self, inputs: Any, params: Any) -> tuple[list[Any], bool]:
        return self.inner.decode(inputs, params)

    def predict(self, loaded: Loaded, items: list[Any], params: Any) -> list[Any]:
        fault = _fault(items)
        if fault == "exit":
            sys.stderr.write("fault:exit: the worker dies now\n")
            sys.stderr.flush()
            os._exit(137)
        if fault is not None and fault.startswith("sleep="):
            time.sleep(float(fault.removeprefix("sleep=")))
        elif fault is not None and fault.startswith("wait="):
            current().sleep(float(fault.removeprefix("wait=")))
        elif fault is not None and fault.startswith("oom>"):
            if len(items) > int(fault.removeprefix("oom>")):
                raise OutOfMemoryError(f"CUDA out of memory on a batch of {len(items)} (injected)")
        elif fault == "raise":
            raise RuntimeError("injected bug")
        elif fault is not None and fault.startswith("progress="):
            steps = int(fault.removeprefix("progress="))
            current().report({"stage": "training", "step": steps, "max_steps": steps})
        real = [item for item in items if not (isinstance(item, str) and item.startswith(PREFIX))]
        outputs = self.inner.predict(loaded, real, params) if real else []
        it = iter(outputs)
        return [
            {"fault": item} if isinstance(item, str) and item.startswith(PREFIX) else next(it)
            for item in items
        ]

    def encode(self, outputs: list[Any], params: Any, batched: bool) -> Any:
        return self.inner.encode(outputs, params, batched)


def faulty(task: str) -> Handler[Any]:
    """The handler lookup a fault-injecting worker runs with."""
    return FaultyHandler(handler_for(task))


class EchoHandler(Handler[TaskParams]):
    """text-classification with no model: each text's label is its length."""

    task = "text-classification"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        return Loaded(spec=spec, model=None)

    def decode(self, inputs: Any, params: TaskParams) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def predict(self, loaded: Loaded, items: list[Any], params: TaskParams) -> list[Any]:
        return [{"label": f"len-{len(item)}", "score": 1.0} for item in items]


class FakeModels:
    """The runner's model source, serving ``EchoHandler``'s one alias, ``echo``."""

    def __init__(self) -> None:
        self._spec = ModelSpec(alias="echo", task="text-classification", source="echo")

    def spec(self, alias: str) -> ModelSpec:
        if alias != "echo":
            raise UnknownModel(f"unknown model {alias!r}: not in the registry")
        return self._spec

    def get(self, alias: str) -> Loaded:
        return Loaded(spec=self.spec(alias), model=None)


def main(argv: list[str] | None = None) -> int:
    """``pipeq worker`` with every handler wrapped in :class:`FaultyHandler`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.faults")
    parser.add_argument("--queue", "-Q", action="append", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", "-c", type=int, default=4)
    parser.add_argument("--prefetch-multiplier", type=int, default=1)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    from services.worker.device import pin_device

    placement = pin_device(args.device)  # before anything imports torch
    from services.worker.main import run

    return run(
        queues=tuple(dict.fromkeys(args.queue)),
        placement=placement,
        concurrency=args.concurrency,
        prefetch_multiplier=args.prefetch_multiplier,
        name=args.name,
        handlers=faulty,
    )


if __name__ == "__main__":
    sys.exit(main())
