"""The base of every task's parameter schema, and how a schema error reads to a user.

Parameters are strict: an unknown name, a wrong type (``"5"`` for an integer)
or a value out of range is refused with the parameter's name and what it
accepts. Schemas are plain pydantic, so producers check them before publishing
and workers check them again on arrival. A check that spans several fields
raises :class:`InvalidParameter` itself, naming the field a user should change.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidParameter


class TaskParams(BaseModel):
    """Parameters of one task; subclasses add fields with their ranges."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: Caps the worker applies when the model's registry entry sets none.
    DEFAULT_LIMITS: ClassVar[dict[str, int | float]] = {}

    def given(self, *names: str) -> dict[str, Any]:
        """The fields among ``names`` that the job (or registry defaults) set to a value."""
        return {
            name: getattr(self, name)
            for name in names
            if name in self.model_fields_set and getattr(self, name) is not None
        }


class TokenizationParams(TaskParams):
    """What a Hugging Face user passes to a tokenizer."""

    padding: bool | Literal["longest", "max_length", "do_not_pad"] = False
    truncation: bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"] = (
        True
    )
    max_length: int | None = Field(None, ge=1, description="Never above the model's own limit.")


class NoParams(TaskParams):
    """A task that takes no parameters yet."""


def parameter_problems(error: ValidationError, schema: type[TaskParams]) -> InvalidParameter:
    """Turn pydantic's report into one clear :class:`InvalidParameter` per parameter at fault
    (the first raised, the others in its ``also``).

    A field typed as a union (``bool | "longest" | ...``) fails once per
    alternative; those messages are joined, so the user sees every accepted form.
    """
    items = error.errors()
    fields = list(dict.fromkeys(_field(item) for item in items))
    first, *others = (_problem(field, items, schema) for field in fields)
    return InvalidParameter(first.name, first.problem, also=tuple(others))


def _field(item: Any) -> str:
    return str(item["loc"][0]) if item["loc"] else "params"


def _problem(field: str, items: list[Any], schema: type[TaskParams]) -> InvalidParameter:
    mine = [item for item in items if _field(item) == field]
    if mine[0]["type"] == "extra_forbidden":
        accepted = ", ".join(sorted(schema.model_fields)) or "none"
        return InvalidParameter(field, f"unknown parameter; accepted: {accepted}")
    messages: list[str] = []
    for item in mine:
        message = item["msg"].removeprefix("Value error, ")
        message = message[0].lower() + message[1:]
        if message not in messages:
            messages.append(message)
    return InvalidParameter(field, f"{', or '.join(messages)} (got {_short(mine[0].get('input'))})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
