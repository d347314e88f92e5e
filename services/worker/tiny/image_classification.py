"""tiny-image-classification: a two-layer random ViT on 32x32 images, three labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples

TASK = "image-classification"
SAMPLES: list[Any] = [samples.inline(samples.image_bytes(), "shapes.png")]
LABELS = ["cat", "dog", "bird"]


def build(folder: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
