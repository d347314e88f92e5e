"""Parameter schemas of the tasks on the nlp queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.params.base import TokenizationParams


class TextClassificationParams(TokenizationParams):
    """As ``pipeline("text-classification")`` takes them."""

    top_k: int | None = Field(
        1, ge=1, description="Labels per text, best first; null returns every label."
    )
    function_to_apply: Literal["default", "sigmoid", "softmax", "none"] = "default"
