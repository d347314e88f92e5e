"""Generation parameters, shared by every task that calls ``generate()``.

The names and meanings are Hugging Face's, with two pipeq rules on top:
``temperature=0`` means greedy decoding, and beam search (``num_beams > 1``)
turns sampling off. A parameter left out keeps the model's own generation
config. ``max_new_tokens`` has no upper bound here (a producer does not know
the registry): the worker caps it by the model's registry ``limits`` or, if
there is none, by :data:`MAX_NEW_TOKENS_CAP`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from shared.errors import InvalidParameter
from shared.params.base import TaskParams

MAX_NEW_TOKENS_CAP = 1024
DEFAULT_MAX_NEW_TOKENS = 64


class GenerationParams(TaskParams):
    """What ``model.generate()`` takes, validated."""

    DEFAULT_LIMITS: ClassVar[dict[str, int | float]] = {"max_new_tokens": MAX_NEW_TOKENS_CAP}

    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, description="Capped per model.")
    do_sample: bool | None = Field(None, description="Unset: the model's generation config.")
    temperature: float | None = Field(None, ge=0, description="0 means greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="0 turns top-k filtering off.")
    num_beams: int = Field(1, ge=1, le=32, description="Above 1, beam search; no sampling.")
    repetition_penalty: float | None = Field(None, gt=0)
    num_return_sequences: int = Field(1, ge=1, le=32)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Reproducible sampling.")

    @model_validator(mode="after")
    def _coherent(self) -> GenerationParams:
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise InvalidParameter(
                "num_return_sequences",
                f"must be <= num_beams ({self.num_beams}) with beam search "
                f"(got {self.num_return_sequences})",
            )
        return self

    @property
    def greedy_forced(self) -> bool:
        """True when the parameters alone rule sampling out."""
        return self.temperature == 0 or self.num_beams > 1

    def generate_kwargs(self, *, model_samples: bool) -> dict[str, Any]:
        """Keyword arguments for ``generate()``; ``model_samples``: the model's own default.

        Sampling parameters are passed only when sampling, so ``generate()``
        does not warn about parameters it would ignore.
        """
        sample = self.do_sample if self.do_sample is not None else model_samples
        if self.greedy_forced:
            sample = False
        if self.num_return_sequences > 1 and not sample and self.num_beams == 1:
            raise InvalidParameter(
                "num_return_sequences",
                "must be 1 with greedy decoding; sample (do_sample=true, temperature > 0) "
                f"or use num_beams >= {self.num_return_sequences}",
            )
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sample,
            "num_beams": self.num_beams,
            "num_return_sequences": self.num_return_sequences,
            **self.given("repetition_penalty"),
        }
        if sample:
            kwargs.update(self.given("temperature", "top_p", "top_k"))
        return kwargs
