"""Pieces the text handlers share: tokenizer arguments and the model's length limit."""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Loaded
from shared.errors import InvalidParameter
from shared.params import TokenizationParams


def model_max_length(loaded: Loaded) -> int | None:
    """The longest input the model takes, from its config or its tokenizer."""
    config = getattr(loaded.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_source_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(loaded.processor, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**9 else None


def check_max_length(loaded: Loaded, max_length: int | None) -> None:
    limit = model_max_length(loaded)
    if max_length is not None and limit is not None and max_length > limit:
        raise InvalidParameter(
            "max_length", f"must be <= {limit}, this model's limit (got {max_length})"
        )


def tokenizer_kwargs(params: TokenizationParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"truncation": params.truncation, "padding": params.padding}
    if params.max_length is not None:
        kwargs["max_length"] = params.max_length
    return kwargs
