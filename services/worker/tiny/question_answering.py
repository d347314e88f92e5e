"""tiny-question-answering: a two-layer random BERT with a span (start/end) head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import bert_config, wordpiece_tokenizer

TASK = "question-answering"
SAMPLES: list[Any] = [
    {
        "question": "What is the capital of France?",
        "context": "Paris is the capital of France and Berlin is the capital of Germany.",
    }
]


def build(folder: Path) -> None:
    from transformers import BertForQuestionAnswering

    tokenizer = wordpiece_tokenizer()
    BertForQuestionAnswering(bert_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
