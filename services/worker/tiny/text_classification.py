"""tiny-text-classification: a two-layer random BERT with a two-label head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import bert_config, wordpiece_tokenizer

TASK = "text-classification"
SAMPLES: list[Any] = ["I love this movie", ["what a great day", "the food was awful"]]


def build(folder: Path) -> None:
    from transformers import BertForSequenceClassification

    tokenizer = wordpiece_tokenizer()
    config = bert_config(tokenizer, labels=["NEGATIVE", "POSITIVE"])
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
