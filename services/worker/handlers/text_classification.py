"""text-classification: labels and scores, exactly as ``pipeline("text-classification")``.

The result of a job equals the pipeline's return value for the same inputs and
parameters: for one text without ``top_k``, ``[{"label", "score"}]``; with
``top_k``, the best ``top_k`` labels; for a list of texts, one entry per text.
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Handler, Loaded, check_items, jsonable, text_items
from services.worker.handlers.nlp_common import check_max_length, tokenizer_kwargs
from services.worker.handlers.pipelines import build_pipeline, model_call
from services.worker.loading import load_pretrained, load_processor
from shared.params.nlp import TextClassificationParams
from shared.registry import ModelSpec


class TextClassification(Handler[TextClassificationParams]):
    task = "text-classification"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = load_pretrained(AutoModelForSequenceClassification, spec, device)
        tokenizer = load_processor(AutoTokenizer, spec)
        pipe = build_pipeline(self.task, model, device, tokenizer=tokenizer)
        return Loaded(spec=spec, model=model, processor=tokenizer, pipeline=pipe, device=device)

    def decode(self, inputs: Any, params: TextClassificationParams) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def predict(
        self, loaded: Loaded, items: list[Any], params: TextClassificationParams
    ) -> list[Any]:
        check_max_length(loaded, params.max_length)
        kwargs: dict[str, Any] = tokenizer_kwargs(params)
        if params.function_to_apply != "default":
            kwargs["function_to_apply"] = params.function_to_apply
        if "top_k" in params.model_fields_set:
            kwargs["top_k"] = params.top_k
        with model_call(loaded):
            return list(loaded.pipeline(list(items), batch_size=len(items), **kwargs))

    def encode(self, outputs: list[Any], params: TextClassificationParams, batched: bool) -> Any:
        check_items(outputs, batched)
        encoded = [jsonable(output) for output in outputs]
        if batched:
            return encoded
        # The pipeline wraps a lone text's single best label in a list (its legacy shape).
        return encoded if "top_k" not in params.model_fields_set else encoded[0]
