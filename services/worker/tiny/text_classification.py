"""tiny-text-classification: a two-layer random BERT with a two-label head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import wordpiece_tokenizer

TASK = "text-classification"
SAMPLES: list[Any] = ["I love this movie", ["what a great day", "the food was awful"]]


def build(folder: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
