"""fill-mask: the likeliest tokens for a mask, as ``pipeline("fill-mask")`` answers.

A text must hold the model's mask token (``[MASK]`` for BERT, ``<mask>`` for
RoBERTa). Per text, ``top_k`` dicts (``score``, ``token``, ``token_str``,
``sequence``); a text with several masks gets one such list per mask.
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import ItemError, Loaded, text_items
from services.worker.handlers.nlp_common import check_max_length, tokenizer_kwargs
from services.worker.handlers.pipelines import PipelineHandler, model_call
from shared.params.nlp import FillMaskParams


class FillMask(PipelineHandler[FillMaskParams]):
    task = "fill-mask"
    model_class = "AutoModelForMaskedLM"

    def decode(self, inputs: Any, params: FillMaskParams) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: FillMaskParams) -> dict[str, Any]:
        check_max_length(loaded, params.max_length)
        return {
            "tokenizer_kwargs": tokenizer_kwargs(params),
            "top_k": params.top_k,
            **params.given("targets"),
        }

    def predict(self, loaded: Loaded, items: list[Any], params: FillMaskParams) -> list[Any]:
        kwargs = self.pipeline_kwargs(loaded, params)
        tokenizer = loaded.processor
        outputs: list[Any] = []
        for text in items:
            ids = tokenizer(text, **kwargs["tokenizer_kwargs"])["input_ids"]
            if tokenizer.mask_token_id in ids:
                outputs.append(None)
            elif tokenizer.mask_token in text:
                outputs.append(ItemError(f"the mask token {tokenizer.mask_token} was truncated"))
            else:
                outputs.append(ItemError(f"no mask token {tokenizer.mask_token} in the text"))
        runnable = [index for index, output in enumerate(outputs) if output is None]
        if runnable:
            texts = [items[index] for index in runnable]
            with model_call(loaded):
                results = loaded.pipeline(texts, batch_size=len(texts), **kwargs)
            if len(texts) == 1:
                results = [results]  # one text: the pipeline answers it unwrapped
            for index, result in zip(runnable, results, strict=True):
                outputs[index] = result
        return outputs
