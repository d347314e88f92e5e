"""``pipeq models check``: load one registered model, run one input through it, measure.

The check goes the way a job goes (registry spec -> :class:`Models` -> handler
params, decode, predict, encode), in the calling process, so it proves that a
registry entry works before a worker takes jobs for it: backends installed,
placement possible, checkpoint loadable, one sample input answered. The sample
is the task's first demo input (``services.worker.tiny.samples``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from services.worker.handlers import handler_for
from services.worker.registry import Models
from shared.errors import PipeqError
from shared.registry import ModelSpec, Registry


@dataclass
class CheckReport:
    alias: str
    task: str
    ok: bool = False
    load_seconds: float = 0.0
    tensor_bytes: int = 0
    rss_delta: int = 0
    run_ms: float = 0.0
    devices: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    quantization: str = ""
    output: Any = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_input(task: str) -> Any:
    from services.worker.tiny import samples

    try:
        return samples()[task][0]
    except (KeyError, IndexError):
        raise PipeqError(f"no sample input for task {task!r}") from None


def check_model(spec: ModelSpec, *, device: str) -> CheckReport:
    """Load ``spec`` on ``device``, answer one sample input, unload; never raises."""
    report = CheckReport(spec.alias, spec.task)
    models: Models | None = None
    try:
        models = Models(Registry({spec.alias: spec}), device=device, queues=(spec.queue,))
        loaded = models.get(spec.alias)
        report.load_seconds = round(loaded.load_seconds, 3)
        report.tensor_bytes = loaded.tensor_bytes
        report.rss_delta = int(loaded.extras.get("rss_delta", 0))
        where = models.inventory()["models"][0]
        report.devices, report.dtypes = where["devices"], where["dtypes"]
        report.quantization = where["quantization"]
        handler = handler_for(spec.task)
        params = handler.params(spec, {})
        items, batched = handler.decode(sample_input(spec.task), params)
        started = time.perf_counter()
        report.output = handler.encode(handler.predict(loaded, items, params), params, batched)
        report.run_ms = round((time.perf_counter() - started) * 1000, 1)
        report.ok = True
        del loaded
    except PipeqError as exc:
        report.error = str(exc)
    except Exception as exc:  # a check reports every failure rather than stopping
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if models is not None:
            models.evict(spec.alias, reason="checked")
    return report
