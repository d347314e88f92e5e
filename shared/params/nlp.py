"""Parameter schemas of the tasks on the nlp queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.errors import InvalidParameter
from shared.params.base import TaskParams, TokenizationParams
from shared.params.generation import GenerationParams

LANGUAGE_CODE = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"


class TextClassificationParams(TokenizationParams):
    """As ``pipeline("text-classification")`` takes them."""

    top_k: int | None = Field(
        1, ge=1, description="Labels per text, best first; null returns every label."
    )
    function_to_apply: Literal["default", "sigmoid", "softmax", "none"] = "default"


class TextGenerationParams(GenerationParams):
    """As ``pipeline("text-generation")`` takes them."""

    return_full_text: bool = Field(True, description="False: only the generated continuation.")


class Seq2SeqParams(GenerationParams, TokenizationParams):
    """Generation, plus how the source text is tokenized (truncation, max_length)."""


class SummarizationParams(Seq2SeqParams):
    """As the summarization pipeline of transformers 4 took them."""


class TranslationParams(Seq2SeqParams):
    """Languages are the model's own codes (``eng_Latn``, ``fr``, ``en_XX``...).

    Multilingual models need ``tgt_lang`` (and usually ``src_lang``); models
    that translate one fixed pair refuse both.
    """

    src_lang: str | None = Field(None, pattern=LANGUAGE_CODE)
    tgt_lang: str | None = Field(None, pattern=LANGUAGE_CODE)


class QuestionAnsweringParams(TaskParams):
    """As the question-answering pipeline of transformers 4 took them.

    ``max_length`` is that pipeline's ``max_seq_len``: question and context
    together, per window; longer contexts are read in windows that overlap by
    ``doc_stride`` tokens.
    """

    top_k: int = Field(1, ge=1, le=100, description="Answers per question, best first.")
    max_answer_len: int = Field(15, ge=1, description="In tokens.")
    max_length: int | None = Field(None, ge=8, description="Default: min(384, model's limit).")
    doc_stride: int = Field(128, ge=1)
    handle_impossible_answer: bool = False
    align_to_words: bool = True


class TokenClassificationParams(TaskParams):
    """As ``pipeline("token-classification")`` takes them."""

    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "none"
    ignore_labels: list[str] | None = Field(None, max_length=1000, description="Default: ['O'].")
    stride: int | None = Field(
        None, ge=1, description="Read long texts in overlapping windows (needs aggregation)."
    )

    @model_validator(mode="after")
    def _stride_needs_aggregation(self) -> TokenClassificationParams:
        if self.stride is not None and self.aggregation_strategy == "none":
            raise InvalidParameter(
                "stride", "needs an aggregation_strategy other than 'none' to merge windows"
            )
        return self


class FillMaskParams(TokenizationParams):
    """As ``pipeline("fill-mask")`` takes them."""

    top_k: int = Field(5, ge=1, le=1000, description="Predictions per mask, best first.")
    targets: list[str] | None = Field(
        None, min_length=1, max_length=1000, description="Score only these tokens."
    )
