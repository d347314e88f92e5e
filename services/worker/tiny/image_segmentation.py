"""tiny-image-segmentation: a random two-stage Segformer for semantic segmentation, 32x32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples

TASK = "image-segmentation"
SAMPLES: list[Any] = [samples.inline(samples.image_bytes(image_format="WEBP"), "shapes.webp")]
LABELS = ["background", "shape", "line"]


def build(folder: Path) -> None:
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
