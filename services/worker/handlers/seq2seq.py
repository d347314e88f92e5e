"""summarization and translation on ``AutoModelForSeq2SeqLM.generate``.

transformers 5 removed both pipelines; pipeq keeps their behaviour and their
answer: ``[{"summary_text": ...}]`` (or ``translation_text``) for one text,
and for a list of texts one such entry per text, flattened to a list of
dicts when each text has a single sequence (as the old pipelines did). The
source is prefixed as the model's config asks (T5's ``"summarize: "``),
tokenized with the job's truncation and ``max_length`` (never above the
model's limit), generated, and decoded without special tokens.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, TypeVar

from services.worker.handlers.base import Handler, Loaded, check_items, jsonable, text_items
from services.worker.handlers.generation import generate_kwargs, sampling
from services.worker.handlers.nlp_common import check_max_length, model_max_length
from services.worker.handlers.pipelines import model_errors
from services.worker.loading import load_pretrained, load_processor
from shared.params.nlp import Seq2SeqParams, SummarizationParams
from shared.registry import ModelSpec

S = TypeVar("S", bound=Seq2SeqParams)


class Seq2SeqHandler(Handler[S]):
    """Tokenize -> ``generate()`` -> decode; subclasses say how the source is prepared."""

    output_key: ClassVar[str]

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        model = load_pretrained(AutoModelForSeq2SeqLM, spec, device)
        tokenizer = load_processor(AutoTokenizer, spec)
        loaded = Loaded(spec=spec, model=model, processor=tokenizer, device=device)
        # Some tokenizers keep the source language as state: tokenizing holds this lock.
        loaded.extras["tokenizer_lock"] = threading.Lock()
        return loaded

    def decode(self, inputs: Any, params: S) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def tokenizer_kwargs(self, loaded: Loaded, params: Seq2SeqParams) -> dict[str, Any]:
        check_max_length(loaded, params.max_length)
        kwargs: dict[str, Any] = {
            "truncation": params.truncation,
            "padding": params.padding or "longest",
            "return_tensors": "pt",
        }
        max_length = params.max_length or model_max_length(loaded)
        if max_length is not None:
            kwargs["max_length"] = max_length
        return kwargs

    def tokenize(
        self, loaded: Loaded, texts: list[str], params: S
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model inputs, extra ``generate()`` arguments) for ``texts``."""
        prefix = task_prefix(loaded.model.config, self.task)
        sources = [prefix + text for text in texts]
        inputs = loaded.processor(sources, **self.tokenizer_kwargs(loaded, params))
        return dict(inputs), {}

    def predict(self, loaded: Loaded, items: list[Any], params: S) -> list[Any]:
        import torch

        kwargs = generate_kwargs(loaded, params)
        with loaded.extras["tokenizer_lock"]:
            inputs, extra = self.tokenize(loaded, list(items), params)
        device = loaded.model.device
        inputs = {name: value.to(device) for name, value in inputs.items()}
        with model_errors(loaded), sampling(kwargs, params.seed), torch.inference_mode():
            sequences = loaded.model.generate(**inputs, **kwargs, **extra)
        texts = loaded.processor.batch_decode(
            sequences, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        per_item = params.num_return_sequences
        return [
            [{self.output_key: text} for text in texts[index * per_item : (index + 1) * per_item]]
            for index in range(len(items))
        ]

    def encode(self, outputs: list[Any], params: S, batched: bool) -> Any:
        check_items(outputs, batched)
        encoded = [jsonable(output) for output in outputs]
        if not batched:
            return encoded[0]
        if all(len(output) == 1 for output in encoded):
            return [output[0] for output in encoded]
        return encoded


def task_prefix(config: Any, key: str) -> str:
    """The text a model's config puts before each source (T5: ``"summarize: "``)."""
    specific = getattr(config, "task_specific_params", None) or {}
    entry = specific.get(key) or {}
    prefix = entry.get("prefix", getattr(config, "prefix", None))
    return prefix if isinstance(prefix, str) else ""


class Summarization(Seq2SeqHandler[SummarizationParams]):
    task = "summarization"
    output_key = "summary_text"
