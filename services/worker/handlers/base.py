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
from shared.jobs import MAX_TEXTS
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
      several jobs; one output per item, in order. An item that only the model can
      find wrong (a prompt too long for it, no mask token) gets an :class:`ItemError`
      as its output instead of failing the other jobs' items.
    - ``encode(outputs, params, batched)``: the job's JSON result: one output, or the
      list of them if the job sent a list; raises :class:`InvalidInput` if any of the
      job's outputs is an :class:`ItemError`.
    """

    task: ClassVar[str]

    @abstractmethod
    def load(self, spec: ModelSpec, device: str) -> Loaded: ...

    def params(self, spec: ModelSpec, raw: dict[str, Any]) -> P:
        """Registry defaults under the job's own, checked against the caps.

        Caps are the registry's ``limits`` over the schema's ``DEFAULT_LIMITS``.
        A value the job (or the registry's defaults) set above its cap is
        refused; a schema default above it is lowered to the cap.
        """
        merged = {**spec.defaults, **raw}
        params = validate_params(self.task, merged)
        caps = {**params.DEFAULT_LIMITS, **spec.limits}
        lowered: dict[str, Any] = {}
        for name, cap in caps.items():
            value = getattr(params, name, None)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= cap:
                continue
            if name in params.model_fields_set:
                raise InvalidParameter(
                    name, f"must be <= {cap} for model {spec.alias!r} (got {value})"
                )
            lowered[name] = type(value)(cap)
        if lowered:
            params = params.model_copy(update=lowered)
        return params  # type: ignore[return-value]

    @abstractmethod
    def decode(self, inputs: Any, params: P) -> tuple[list[Any], bool]:
        """(items, batched): ``batched`` is True when the job sent a list."""

    @abstractmethod
    def predict(self, loaded: Loaded, items: list[Any], params: P) -> list[Any]: ...

    def encode(self, outputs: list[Any], params: P, batched: bool) -> Any:
        check_items(outputs, batched)
        encoded = [jsonable(output) for output in outputs]
        return encoded if batched else encoded[0]

    @classmethod
    def params_schema(cls) -> type[TaskParams]:
        return PARAMS.get(cls.task, NoParams)


@dataclass(frozen=True)
class ItemError:
    """The output of an item the model refused; its job fails in ``encode``."""

    problem: str


def check_items(outputs: list[Any], batched: bool) -> None:
    """Raise :class:`InvalidInput` for the job's first :class:`ItemError`, naming the item."""
    for index, output in enumerate(outputs):
        if isinstance(output, ItemError):
            where = f"inputs[{index}]" if batched else "inputs"
            raise InvalidInput(f"{where}: {output.problem}")


def text_items(inputs: Any, *, max_items: int = MAX_TEXTS) -> tuple[list[str], bool]:
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
