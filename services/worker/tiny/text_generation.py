"""tiny-text-generation: a two-layer random GPT-2 with a byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import byte_level_tokenizer

TASK = "text-generation"
SAMPLES: list[Any] = ["The capital of France is"]
REGISTRY: dict[str, Any] = {"defaults": {"max_new_tokens": 8}}

END = "<|endoftext|>"


def build(folder: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_level_tokenizer(
        special=[END], template=None, bos_token=END, eos_token=END, unk_token=END, pad_token=END
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
