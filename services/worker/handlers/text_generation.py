"""text-generation: continuations of prompts, as ``pipeline("text-generation")`` answers.

A prompt gives ``[{"generated_text": ...}]`` (one entry per returned
sequence); a list of prompts, one such list per prompt. Decoding follows the
pipeline, including its defaults when the job and the model's generation
config leave a parameter out (a sampling run without ``temperature`` uses
0.7), except that pipeq always states ``do_sample`` and ``max_new_tokens``
itself (greedy unless the model's config samples; 64 new tokens).
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.base import Handler, ItemError, Loaded, text_items
from services.worker.handlers.generation import generate_kwargs, sampling
from services.worker.handlers.nlp_common import model_max_length
from services.worker.handlers.pipelines import build_pipeline, model_errors
from services.worker.loading import load_pretrained, load_processor
from shared.params.nlp import TextGenerationParams
from shared.registry import ModelSpec


class TextGeneration(Handler[TextGenerationParams]):
    task = "text-generation"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = load_pretrained(AutoModelForCausalLM, spec, device)
        tokenizer = load_processor(AutoTokenizer, spec)
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            # Batched prompts are padded (on the left); any id will do under the attention mask.
            tokenizer.pad_token = tokenizer.eos_token
        pipe = build_pipeline(self.task, model, device, tokenizer=tokenizer)
        return Loaded(spec=spec, model=model, processor=tokenizer, pipeline=pipe, device=device)

    def decode(self, inputs: Any, params: TextGenerationParams) -> tuple[list[Any], bool]:
        return text_items(inputs)

    def predict(self, loaded: Loaded, items: list[Any], params: TextGenerationParams) -> list[Any]:
        kwargs = generate_kwargs(loaded, params)
        outputs: list[Any] = [self._too_long(loaded, text, params) for text in items]
        runnable = [index for index, output in enumerate(outputs) if output is None]
        if not runnable:
            return outputs
        prompts = [items[index] for index in runnable]
        kwargs["return_full_text"] = params.return_full_text
        with model_errors(loaded), sampling(kwargs, params.seed):
            if len(prompts) == 1:
                # A lone prompt is not batched: the pipeline's DataLoader would draw from
                # the random generator first, and a seed would give another text than a
                # direct call with that seed.
                results = [loaded.pipeline(prompts[0], **kwargs)]
            else:
                results = loaded.pipeline(prompts, batch_size=len(prompts), **kwargs)
        for index, result in zip(runnable, results, strict=True):
            outputs[index] = result
        return outputs

    @staticmethod
    def _too_long(loaded: Loaded, text: str, params: TextGenerationParams) -> ItemError | None:
        limit = model_max_length(loaded)
        if limit is None:
            return None
        length = len(loaded.processor(text)["input_ids"])
        if length + params.max_new_tokens <= limit:
            return None
        return ItemError(
            f"the prompt is {length} tokens; with max_new_tokens={params.max_new_tokens} "
            f"that exceeds this model's limit of {limit} tokens"
        )
