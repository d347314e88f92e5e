"""tiny-object-detection: a two-layer random YOLOS (ViT with detection tokens) on 64x64 images.

Its random scores sit well below the pipeline's default threshold of 0.5, so
the registry entry lowers it: the demo then shows boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples

TASK = "object-detection"
SAMPLES: list[Any] = [samples.inline(samples.image_bytes(image_format="JPEG"), "shapes.jpg")]
LABELS = ["person", "car", "dog"]
REGISTRY: dict[str, Any] = {"defaults": {"threshold": 0.4}}


def build(folder: Path) -> None:
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    config = YolosConfig(
        image_size=[64, 64],
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=6,
        initializer_range=0.2,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    model = YolosForObjectDetection(config)
    # YOLOS starts its detection tokens at zero: all would find the same box. Spread them.
    model.vit.embeddings.detection_tokens.data.normal_(std=1.0)
    model.save_pretrained(folder)
    processor = YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    processor.save_pretrained(folder)
