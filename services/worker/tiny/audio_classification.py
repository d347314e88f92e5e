"""tiny-audio-classification: a random wav2vec2 with a three-label classification head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples
from services.worker.tiny.speech import feature_extractor, wav2vec2_config

TASK = "audio-classification"
SAMPLES: list[Any] = [
    samples.inline(samples.audio_bytes(audio_format="FLAC", subtype="PCM_16"), "chirp.flac")
]
LABELS = ["speech", "music", "noise"]


def build(folder: Path) -> None:
    from transformers import Wav2Vec2ForSequenceClassification

    config = wav2vec2_config(
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    feature_extractor().save_pretrained(folder)
