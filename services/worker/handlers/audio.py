"""The audio queue's tasks, on the transformers pipelines.

Inputs are audio clips (:mod:`services.worker.media`), decoded in ``decode``
and resampled in ``predict`` to the rate of the model's feature extractor
(:mod:`services.worker.resample`); the pipeline then gets float32 arrays at
that rate, so it needs neither ffmpeg nor torchaudio.

- automatic-speech-recognition: per clip ``{"text"}``, plus ``"chunks"``
  (``{"text", "timestamp": [start, end]}`` in seconds) with ``return_timestamps``;
  CTC models (wav2vec2) or Whisper, told apart by the model's config;
- audio-classification: per clip, ``top_k`` of ``{"score", "label"}``.
"""

from __future__ import annotations

from typing import Any

from services.worker.control import current
from services.worker.handlers.base import Loaded
from services.worker.handlers.pipelines import PipelineHandler, auto_class_for, build_pipeline
from services.worker.loading import load_pretrained, load_processor
from services.worker.media import Audio, audio_items
from services.worker.resample import resample
from shared.errors import InvalidParameter
from shared.params.audio import AudioClassificationParams, SpeechRecognitionParams
from shared.registry import ModelSpec

SPEECH_HEADS = ("CTC", "SPEECH_SEQ_2_SEQ")
#: What each kind of speech model accepts for ``return_timestamps`` (besides false).
TIMESTAMPS = {"ctc": ("char", "word"), "seq2seq_whisper": (True, "word"), "seq2seq": ()}
GENERATION_PARAMS = ("max_new_tokens", "num_beams", "language")


def at_model_rate(loaded: Loaded, clips: list[Audio]) -> list[Any]:
    rate = int(loaded.pipeline.feature_extractor.sampling_rate)
    return [resample(clip.samples, clip.rate, rate) for clip in clips]


class SpeechRecognition(PipelineHandler[SpeechRecognitionParams]):
    task = "automatic-speech-recognition"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoConfig, AutoProcessor

        config = load_processor(AutoConfig, spec)
        model = load_pretrained(auto_class_for(config, SPEECH_HEADS), spec, device)
        processor = load_processor(AutoProcessor, spec)
        pipe = build_pipeline(
            self.task,
            model,
            device,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
        )
        return Loaded(spec=spec, model=model, processor=processor, pipeline=pipe, device=device)

    def decode(self, inputs: Any, params: SpeechRecognitionParams) -> tuple[list[Any], bool]:
        return audio_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: SpeechRecognitionParams) -> dict[str, Any]:
        kind = loaded.pipeline.type
        accepted = TIMESTAMPS.get(kind, ())
        if params.return_timestamps is not False and params.return_timestamps not in accepted:
            shown = ", ".join(repr(value) for value in (False, *accepted))
            raise InvalidParameter(
                "return_timestamps",
                f"this model ({kind}) accepts {shown} (got {params.return_timestamps!r})",
            )
        kwargs: dict[str, Any] = params.given("chunk_length_s", "stride_length_s")
        if params.return_timestamps is not False:
            kwargs["return_timestamps"] = params.return_timestamps
        generation = params.given(*GENERATION_PARAMS)
        if generation and not kind.startswith("seq2seq"):
            raise InvalidParameter(
                next(iter(generation)), "applies to sequence-to-sequence models such as Whisper"
            )
        if "language" in generation:
            _check_language(loaded, generation["language"])
        if kind.startswith("seq2seq"):  # ends at the next token once the job should stop
            kwargs["generate_kwargs"] = {
                **generation,
                "stopping_criteria": current().stopping_criteria(),
            }
        if kwargs.get("chunk_length_s") and kind.startswith("seq2seq"):
            kwargs["ignore_warning"] = True
        return kwargs

    def predict(
        self, loaded: Loaded, items: list[Any], params: SpeechRecognitionParams
    ) -> list[Any]:
        return super().predict(loaded, at_model_rate(loaded, items), params)


def _check_language(loaded: Loaded, language: str) -> None:
    """Whisper's ``language`` (a code, ``fr``, or a name, ``french``) must be one of those
    its generation config lists; transformers' own error blamed the model (``model_failure``)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    config = getattr(loaded.model, "generation_config", None)
    if config is None:  # served from its own process: the model there checks it
        return
    known = sorted(token.strip("<|>") for token in getattr(config, "lang_to_id", None) or {})
    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower()).strip("<|>")
    if code not in known:
        shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        raise InvalidParameter(
            "language", f"this model knows {shown or 'no language'} (got {language!r})"
        )


class AudioClassification(PipelineHandler[AudioClassificationParams]):
    task = "audio-classification"
    model_class = "AutoModelForAudioClassification"
    processor_class = "AutoFeatureExtractor"
    processor_arg = "feature_extractor"

    def decode(self, inputs: Any, params: AudioClassificationParams) -> tuple[list[Any], bool]:
        return audio_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: AudioClassificationParams) -> dict[str, Any]:
        return {"top_k": params.top_k, "function_to_apply": params.function_to_apply}

    def predict(
        self, loaded: Loaded, items: list[Any], params: AudioClassificationParams
    ) -> list[Any]:
        return super().predict(loaded, at_model_rate(loaded, items), params)
