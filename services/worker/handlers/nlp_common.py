"""Pieces the text handlers share: tokenizer arguments and the model's length limit."""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Loaded
from shared.errors import InvalidParameter
from shared.params import TokenizationParams


def model_max_length(loaded: Loaded) -> int | None:
    """The longest input the model takes: the lower of its config's and its tokenizer's.

    (RoBERTa's config says 514 positions, its tokenizer 512: two are reserved.)
    """
    limits = []
    config = getattr(loaded.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_source_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**9:
        limits.append(value)
    return min(limits) if limits else None


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
