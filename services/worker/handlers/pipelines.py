"""Handlers for the tasks that transformers still has a pipeline for.

The model and its processor load through ``services.worker.loading`` (so
placement, dtype and quantization stay in one place); the pipeline is only
the pre- and post-processing around them. A job's result is then the
pipeline's return value for the same inputs and parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from services.worker.handlers.base import Handler, Loaded, P
from services.worker.handlers.generation import RANDOM
from services.worker.loading import load_pretrained, load_processor
from shared.errors import ModelFailure
from shared.registry import ModelSpec


def build_pipeline(task: str, model: Any, device: str, **processors: Any) -> Any:
    """``transformers.pipeline`` around an already loaded model and its processors."""
    from transformers import pipeline

    # A model dispatched by accelerate (device_map) stays where it is.
    placement = {} if getattr(model, "hf_device_map", None) else {"device": device}
    return pipeline(task, model=model, **processors, **placement)


def auto_class_for(config: Any, candidates: tuple[str, ...]) -> Any:
    """The first Auto class among ``candidates`` whose mapping knows ``config``'s model type."""
    import transformers
    from transformers.models.auto import modeling_auto

    for name in candidates:
        mapping = getattr(modeling_auto, f"MODEL_FOR_{name}_MAPPING_NAMES")
        if config.model_type in mapping:
            return getattr(transformers, f"AutoModelFor{_camel(name)}")
    raise ModelFailure(
        f"model type {config.model_type!r} has no head for this task "
        f"(looked for: {', '.join(candidates)})"
    )


def _camel(name: str) -> str:
    special = {"CTC": "CTC", "SPEECH_SEQ_2_SEQ": "SpeechSeq2Seq"}
    return special.get(name) or "".join(part.capitalize() for part in name.split("_"))


@contextlib.contextmanager
def model_errors(loaded: Loaded) -> Iterator[None]:
    """Errors a model raises on inputs it cannot take, as :class:`ModelFailure`."""
    try:
        yield
    except (ValueError, RuntimeError, IndexError, KeyError) as exc:
        if type(exc).__name__ == "OutOfMemoryError":
            raise ModelFailure(f"model {loaded.spec.alias!r}: out of memory") from exc
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ModelFailure(f"model {loaded.spec.alias!r} failed: {message}") from exc


@contextlib.contextmanager
def model_call(loaded: Loaded) -> Iterator[None]:
    """Around a model call that does not sample: errors translated, and the random
    generator shared (a batched pipeline call draws from it), so that a seeded
    sampling run elsewhere in the worker is not disturbed."""
    with model_errors(loaded), RANDOM.shared():
        yield


class PipelineHandler(Handler[P]):
    """Load = Auto model + its processor + the pipeline; predict = one pipeline call."""

    model_class: ClassVar[str]
    processor_class: ClassVar[str] = "AutoTokenizer"
    #: The pipeline's keyword for the processor: tokenizer, image_processor, feature_extractor.
    processor_arg: ClassVar[str] = "tokenizer"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        import transformers

        model = load_pretrained(getattr(transformers, self.model_class), spec, device)
        processor = load_processor(getattr(transformers, self.processor_class), spec)
        pipe = build_pipeline(self.task, model, device, **{self.processor_arg: processor})
        return Loaded(spec=spec, model=model, processor=processor, pipeline=pipe, device=device)

    def pipeline_kwargs(self, loaded: Loaded, params: P) -> dict[str, Any]:
        """The pipeline's keyword arguments for ``params``."""
        return {}

    def predict(self, loaded: Loaded, items: list[Any], params: P) -> list[Any]:
        kwargs = self.pipeline_kwargs(loaded, params)
        with model_call(loaded):
            return list(loaded.pipeline(list(items), batch_size=len(items), **kwargs))
