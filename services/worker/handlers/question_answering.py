"""question-answering (extractive) on ``AutoModelForQuestionAnswering``.

transformers 5.3 removed the pipeline; pipeq keeps its answer: for one
``{"question", "context"}`` with ``top_k=1``, ``{"score", "start", "end",
"answer"}`` where ``answer == context[start:end]``; with ``top_k > 1`` a list
of those, best first; for a list of questions, one entry per question.

Each question and its context are tokenized together; a context longer than
``max_length`` tokens is read in windows that overlap by ``doc_stride``
tokens. The model scores every token as an answer's start and end;
:mod:`services.worker.handlers.spans` picks the best spans and maps them back
to characters through the tokenizer's offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.worker.handlers.base import Handler, ItemError, Loaded
from services.worker.handlers.nlp_common import check_max_length, model_max_length
from services.worker.handlers.pipelines import model_call
from services.worker.handlers.spans import best_answers
from services.worker.loading import load_pretrained, load_processor
from shared.errors import ConfigError, InvalidInput
from shared.jobs import MAX_ITEMS
from shared.params.nlp import QuestionAnsweringParams
from shared.registry import ModelSpec

DEFAULT_MAX_LENGTH = 384
FEATURES_PER_PASS = 32


@dataclass(frozen=True)
class Question:
    question: str
    context: str


class QuestionAnswering(Handler[QuestionAnsweringParams]):
    task = "question-answering"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        model = load_pretrained(AutoModelForQuestionAnswering, spec, device)
        tokenizer = load_processor(AutoTokenizer, spec)
        if not tokenizer.is_fast:
            raise ConfigError(f"model {spec.alias!r}: question answering needs a fast tokenizer")
        return Loaded(spec=spec, model=model, processor=tokenizer, device=device)

    def decode(self, inputs: Any, params: QuestionAnsweringParams) -> tuple[list[Any], bool]:
        batched = isinstance(inputs, list)
        items = inputs if batched else [inputs]
        if batched and not items:
            raise InvalidInput("inputs: the list of questions is empty")
        if len(items) > MAX_ITEMS:
            raise InvalidInput(f"inputs: {len(items)} questions; the limit is {MAX_ITEMS}")
        return [
            _question(item, f"inputs[{index}]" if batched else "inputs")
            for index, item in enumerate(items)
        ], batched

    def predict(
        self, loaded: Loaded, items: list[Any], params: QuestionAnsweringParams
    ) -> list[Any]:
        import torch

        tokenizer = loaded.processor
        check_max_length(loaded, params.max_length)
        max_length = params.max_length or min(DEFAULT_MAX_LENGTH, model_max_length(loaded) or 512)
        question_first = tokenizer.padding_side == "right"
        outputs: list[Any] = [_too_long(tokenizer, item, max_length) for item in items]
        runnable = [index for index, output in enumerate(outputs) if output is None]
        if not runnable:
            return outputs
        questions = [items[index].question for index in runnable]
        contexts = [items[index].context for index in runnable]
        with model_call(loaded):
            encoded = tokenizer(
                questions if question_first else contexts,
                contexts if question_first else questions,
                padding="longest",
                truncation="only_second" if question_first else "only_first",
                max_length=max_length,
                stride=min(params.doc_stride, max_length // 2),
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            names = [name for name in tokenizer.model_input_names if name in encoded]
            starts, ends = [], []
            with torch.inference_mode():
                for first in range(0, encoded["input_ids"].shape[0], FEATURES_PER_PASS):
                    batch = {
                        name: encoded[name][first : first + FEATURES_PER_PASS].to(
                            loaded.model.device
                        )
                        for name in names
                    }
                    logits = loaded.model(**batch)
                    starts.append(logits.start_logits.float().cpu())
                    ends.append(logits.end_logits.float().cpu())
        answers = best_answers(
            encoded,
            torch.cat(starts).numpy(),
            torch.cat(ends).numpy(),
            contexts=contexts,
            context_sequence=1 if question_first else 0,
            cls_token_id=tokenizer.cls_token_id,
            params=params,
        )
        for index, answer in zip(runnable, answers, strict=True):
            outputs[index] = answer[0] if params.top_k == 1 else answer
        return outputs


def _question(item: Any, where: str) -> Question:
    shape = '{"question": "...", "context": "..."}'
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected {shape}, got {type(item).__name__}")
    unknown = set(item) - {"question", "context"}
    if unknown:
        raise InvalidInput(f"{where}: unknown keys {sorted(unknown)}; expected {shape}")
    for key in ("question", "context"):
        value = item.get(key)
        if value is None:
            raise InvalidInput(
                f"{where}: a question needs a context"
                if key == "context"
                else f"{where}: no question"
            )
        if not isinstance(value, str):
            raise InvalidInput(f"{where}.{key}: expected a text, got {type(value).__name__}")
        if not value.strip():
            raise InvalidInput(f"{where}.{key}: the text is empty")
    return Question(question=item["question"], context=item["context"])


def _too_long(tokenizer: Any, item: Question, max_length: int) -> ItemError | None:
    length = len(tokenizer(item.question, add_special_tokens=False)["input_ids"])
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - length
    if room >= 1:
        return None
    return ItemError(
        f"the question is {length} tokens; it leaves no room for the context "
        f"within max_length={max_length}"
    )
