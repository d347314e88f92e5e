"""The base of every task's parameter schema, and how a schema error reads to a user.

Parameters are strict: an unknown name, a wrong type (``"5"`` for an integer)
or a value out of range is refused with the parameter's name and what it
accepts. Schemas are plain pydantic, so producers check them before publishing
and workers check them again on arrival.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidParameter


class TaskParams(BaseModel):
    """Parameters of one task; subclasses add fields with their ranges."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TokenizationParams(TaskParams):
    """What a Hugging Face user passes to a tokenizer."""

    padding: bool | Literal["longest", "max_length", "do_not_pad"] = False
    truncation: bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"] = (
        True
    )
    max_length: int | None = Field(None, ge=1, description="Never above the model's own limit.")


class NoParams(TaskParams):
    """A task that takes no parameters yet."""


def first_problem(error: ValidationError, schema: type[TaskParams]) -> InvalidParameter:
    """Turn pydantic's report into one clear :class:`InvalidParameter`."""
    item = error.errors()[0]
    name = ".".join(str(part) for part in item["loc"]) or "params"
    if item["type"] == "extra_forbidden":
        accepted = ", ".join(sorted(schema.model_fields)) or "none"
        return InvalidParameter(name, f"unknown parameter; accepted: {accepted}")
    message = item["msg"]
    message = message[0].lower() + message[1:]
    return InvalidParameter(name, f"{message} (got {_short(item.get('input'))})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
