"""Parameter schemas of the tasks on the audio queue."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shared.errors import InvalidParameter
from shared.params.base import TaskParams
from shared.params.generation import MAX_NEW_TOKENS_CAP
from shared.params.nlp import LANGUAGE_CODE


class SpeechRecognitionParams(TaskParams):
    """As ``pipeline("automatic-speech-recognition")`` takes them.

    ``return_timestamps``: ``"char"`` or ``"word"`` for CTC models (wav2vec2),
    ``true`` (segments) or ``"word"`` for Whisper. Audio longer than
    ``chunk_length_s`` seconds is read in chunks that overlap by
    ``stride_length_s`` on each side. ``max_new_tokens``, ``num_beams`` and
    ``language`` apply to sequence-to-sequence models (Whisper) only.
    """

    DEFAULT_LIMITS: ClassVar[dict[str, int | float]] = {"max_new_tokens": MAX_NEW_TOKENS_CAP}

    return_timestamps: bool | Literal["char", "word"] = False
    chunk_length_s: float | None = Field(None, gt=0, le=600)
    stride_length_s: float | None = Field(None, ge=0, le=300)
    max_new_tokens: int | None = Field(None, ge=1)
    num_beams: int | None = Field(None, ge=1, le=32)
    language: str | None = Field(None, pattern=LANGUAGE_CODE)

    @model_validator(mode="after")
    def _stride_within_chunk(self) -> SpeechRecognitionParams:
        if self.stride_length_s is None:
            return self
        if self.chunk_length_s is None:
            raise InvalidParameter("stride_length_s", "needs chunk_length_s")
        if 2 * self.stride_length_s >= self.chunk_length_s:
            raise InvalidParameter(
                "stride_length_s",
                f"must be < chunk_length_s / 2 = {self.chunk_length_s / 2:g} "
                f"(got {self.stride_length_s:g})",
            )
        return self


class AudioClassificationParams(TaskParams):
    """As ``pipeline("audio-classification")`` takes them."""

    top_k: int = Field(5, ge=1, le=1000, description="Labels per clip, best first.")
    function_to_apply: Literal["softmax", "sigmoid", "none"] = "softmax"
