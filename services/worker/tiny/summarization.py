"""tiny-summarization: a random BART (two layers each side), byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import byte_level_tokenizer

TASK = "summarization"
SAMPLES: list[Any] = [
    "pipeq runs Hugging Face models as an asynchronous job service. Producers post jobs to "
    "RabbitMQ, workers run them, and every job's state and result live in a database."
]
REGISTRY: dict[str, Any] = {"defaults": {"max_new_tokens": 8}}


def build(folder: Path) -> None:
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = byte_level_tokenizer(
        special=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        template=("<s>", "</s>"),
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    model = BartForConditionalGeneration(config)
    # Random weights tend to end at once; a few tokens first, so that the demo shows text.
    model.generation_config.min_new_tokens = 4
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
