"""Per-task parameter schemas (:data:`PARAMS`) and :func:`validate_params`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.params.base import NoParams, TaskParams, TokenizationParams, first_problem
from shared.params.nlp import TextClassificationParams

PARAMS: dict[str, type[TaskParams]] = {
    "text-classification": TextClassificationParams,
}

__all__ = ["PARAMS", "NoParams", "TaskParams", "TokenizationParams", "validate_params"]


def validate_params(task: str, raw: dict[str, Any]) -> TaskParams:
    """``raw`` checked against ``task``'s schema; raises :class:`InvalidParameter`."""
    schema = PARAMS.get(task, NoParams)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise first_problem(exc, schema) from None
