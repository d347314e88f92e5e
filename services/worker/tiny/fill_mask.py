"""tiny-fill-mask: a two-layer random BERT with its masked-language-model head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import bert_config, wordpiece_tokenizer

TASK = "fill-mask"
SAMPLES: list[Any] = ["Paris is the [MASK] of France."]
REGISTRY: dict[str, Any] = {"defaults": {"top_k": 3}}


def build(folder: Path) -> None:
    from transformers import BertForMaskedLM

    tokenizer = wordpiece_tokenizer()
    BertForMaskedLM(bert_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
