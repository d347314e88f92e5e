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


def first_problem(error: ValidationError, schema: type[TaskParams]) -> InvalidParameter:
    """Turn pydantic's report into one clear :class:`InvalidParameter`.

    A field typed as a union (``bool | "longest" | ...``) fails once per
    alternative; those messages are joined, so the user sees every accepted form.
    """
    items = error.errors()
    first = items[0]
    field = str(first["loc"][0]) if first["loc"] else "params"
    if first["type"] == "extra_forbidden":
        accepted = ", ".join(sorted(schema.model_fields)) or "none"
        return InvalidParameter(field, f"unknown parameter; accepted: {accepted}")
    messages: list[str] = []
    for item in items:
        if (str(item["loc"][0]) if item["loc"] else "params") != field:
            continue
        message = item["msg"].removeprefix("Value error, ")
        message = message[0].lower() + message[1:]
        if message not in messages:
            messages.append(message)
    return InvalidParameter(field, f"{', or '.join(messages)} (got {_short(first.get('input'))})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
