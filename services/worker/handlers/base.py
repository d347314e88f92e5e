"""What every task handler is: load once, then decode -> predict -> encode per job.

Handlers are plain code over plain data: they import neither Celery nor the
database, so a test drives them with a model and a list of inputs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from shared.errors import InvalidInput, InvalidParameter
from shared.params import PARAMS, NoParams, TaskParams, validate_params
from shared.registry import ModelSpec

P = TypeVar("P", bound=TaskParams)


@dataclass
class Loaded:
    """A model ready to serve: what ``Handler.load`` returns, kept for the process's life."""

    spec: ModelSpec
    model: Any
    processor: Any = None
    pipeline: Any = None
    device: str = "cpu"
    load_seconds: float = 0.0
    tensor_bytes: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class Handler(ABC, Generic[P]):
    """One task family's lifecycle.

    - ``load(spec, device)``: once per worker process; returns :class:`Loaded`.
    - ``params(spec, raw)``: registry defaults under the job's own, checked against caps.
    - ``decode(inputs, params)``: the job's inputs as a list of items (a lone input is a
      list of one), each checked; raises :class:`InvalidInput`.
    - ``predict(loaded, items, params)``: one forward pass over items that may come from
      several jobs; one output per item, in order.
    - ``encode(outputs, params, batched)``: the job's JSON result: one output, or the
      list of them if the job sent a list.
    """

    task: ClassVar[str]

    @abstractmethod
    def load(self, spec: ModelSpec, device: str) -> Loaded: ...

    def params(self, spec: ModelSpec, raw: dict[str, Any]) -> P:
        merged = {**spec.defaults, **raw}
        params = validate_params(self.task, merged)
        for name, cap in spec.limits.items():
            value = getattr(params, name, None)
            if isinstance(value, int | float) and value > cap:
                raise InvalidParameter(
                    name, f"must be <= {cap} for model {spec.alias!r} (got {value})"
                )
        return params  # type: ignore[return-value]

    @abstractmethod
    def decode(self, inputs: Any, params: P) -> tuple[list[Any], bool]:
        """(items, batched): ``batched`` is True when the job sent a list."""

    @abstractmethod
    def predict(self, loaded: Loaded, items: list[Any], params: P) -> list[Any]: ...

    def encode(self, outputs: list[Any], params: P, batched: bool) -> Any:
        encoded = [jsonable(output) for output in outputs]
        return encoded if batched else encoded[0]

    @classmethod
    def params_schema(cls) -> type[TaskParams]:
        return PARAMS.get(cls.task, NoParams)


def text_items(inputs: Any, *, max_items: int = 1024) -> tuple[list[str], bool]:
    """A text or a non-empty list of texts, each non-empty."""
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if batched and not items:
        raise InvalidInput("inputs: the list of texts is empty")
    if len(items) > max_items:
        raise InvalidInput(f"inputs: {len(items)} texts in one job; the limit is {max_items}")
    for index, item in enumerate(items):
        where = f"inputs[{index}]" if batched else "inputs"
        if not isinstance(item, str):
            raise InvalidInput(f"{where}: expected a text, got {type(item).__name__}")
        if not item.strip():
            raise InvalidInput(f"{where}: the text is empty")
    return items, batched


def jsonable(value: Any) -> Any:
    """``value`` with numpy and torch scalars and arrays turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return jsonable(item())
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
