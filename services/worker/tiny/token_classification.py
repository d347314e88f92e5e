"""tiny-token-classification: a two-layer random BERT tagging people, places and organisations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import bert_config, wordpiece_tokenizer

TASK = "token-classification"
SAMPLES: list[Any] = ["My name is Sarah and I live in London."]
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
REGISTRY: dict[str, Any] = {"defaults": {"aggregation_strategy": "simple"}}


def build(folder: Path) -> None:
    from transformers import BertForTokenClassification

    tokenizer = wordpiece_tokenizer()
    BertForTokenClassification(bert_config(tokenizer, labels=LABELS)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
