"""token-classification (NER): entity spans and types, as ``pipeline("token-classification")``.

Per text, a list of entities: with ``aggregation_strategy="none"`` one per
token (``entity``, ``score``, ``index``, ``word``, ``start``, ``end``);
otherwise tokens are merged into spans (``entity_group`` instead of
``entity``). ``stride`` reads texts longer than the model's limit in
overlapping windows.
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Loaded, text_items
from services.worker.handlers.nlp_common import model_max_length
from services.worker.handlers.pipelines import PipelineHandler
from shared.errors import InvalidParameter
from shared.params.nlp import TokenClassificationParams


class TokenClassification(PipelineHandler[TokenClassificationParams]):
    task = "token-classification"
    model_class = "AutoModelForTokenClassification"

    def decode(self, inputs: Any, params: TokenClassificationParams) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: TokenClassificationParams) -> dict[str, Any]:
        if params.aggregation_strategy in {"first", "average", "max"} and not getattr(
            loaded.processor, "is_fast", False
        ):
            raise InvalidParameter(
                "aggregation_strategy", "'first', 'average' and 'max' need a fast tokenizer"
            )
        limit = model_max_length(loaded)
        if params.stride is not None and limit is not None and params.stride >= limit // 2:
            raise InvalidParameter(
                "stride", f"must be < {limit // 2}, half this model's limit (got {params.stride})"
            )
        return {
            "aggregation_strategy": params.aggregation_strategy,
            **params.given("ignore_labels", "stride"),
        }
