"""Per-task parameter schemas (:data:`PARAMS`) and :func:`validate_params`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.params.audio import AudioClassificationParams, SpeechRecognitionParams
from shared.params.base import NoParams, TaskParams, TokenizationParams, parameter_problems
from shared.params.finetune import FineTuneParams
from shared.params.generation import GenerationParams
from shared.params.nlp import (
    FillMaskParams,
    QuestionAnsweringParams,
    SummarizationParams,
    TextClassificationParams,
    TextGenerationParams,
    TokenClassificationParams,
    TranslationParams,
)
from shared.params.vision import (
    ImageClassificationParams,
    ImageSegmentationParams,
    ObjectDetectionParams,
)

PARAMS: dict[str, type[TaskParams]] = {
    "text-generation": TextGenerationParams,
    "text-classification": TextClassificationParams,
    "question-answering": QuestionAnsweringParams,
    "summarization": SummarizationParams,
    "translation": TranslationParams,
    "token-classification": TokenClassificationParams,
    "fill-mask": FillMaskParams,
    "image-classification": ImageClassificationParams,
    "object-detection": ObjectDetectionParams,
    "image-segmentation": ImageSegmentationParams,
    "automatic-speech-recognition": SpeechRecognitionParams,
    "audio-classification": AudioClassificationParams,
    "fine-tune": FineTuneParams,
}

__all__ = [
    "PARAMS",
    "GenerationParams",
    "NoParams",
    "TaskParams",
    "TokenizationParams",
    "validate_params",
]


def validate_params(task: str, raw: dict[str, Any]) -> TaskParams:
    """``raw`` checked against ``task``'s schema; raises :class:`InvalidParameter`."""
    schema = PARAMS.get(task, NoParams)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise parameter_problems(exc, schema) from None
