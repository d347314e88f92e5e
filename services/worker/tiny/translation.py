"""tiny-translation: a random multilingual M2M100 (NLLB's architecture) with an NLLB tokenizer.

Its tokenizer knows three language codes (eng_Latn, fra_Latn, deu_Latn), so
``src_lang`` and ``tgt_lang`` matter as they do for NLLB-200. The registry
entry defaults them to English -> French.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.worker.tiny.text import bpe_vocab

TASK = "translation"
SAMPLES: list[Any] = ["I love this movie"]
LANGUAGES = ["eng_Latn", "fra_Latn", "deu_Latn"]
REGISTRY: dict[str, Any] = {
    "defaults": {"src_lang": "eng_Latn", "tgt_lang": "fra_Latn", "max_new_tokens": 8}
}


def build(folder: Path) -> None:
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    vocab, merges = bpe_vocab(special=["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer = NllbTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens=LANGUAGES,
        src_lang=LANGUAGES[0],
        model_max_length=128,
    )
    config = M2M100Config(
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
    )
    M2M100ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
