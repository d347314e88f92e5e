"""A tiny BERT classifier sized for bitsandbytes, and registry entries that load it quantized.

Its Linear layers hold 3.2 M of its 3.3 M parameters (hidden 256, 4 layers, feed-forward
1024, a 224-token vocabulary), so quantization shows in its size: embeddings, which
bitsandbytes never quantizes, do not dominate as they do in all-MiniLM-L6-v2. Every
Linear's ``in_features`` is a multiple of 64, which 4-bit needs on CPU, and the 2-label
head is skipped (kept in full precision). Weights start at ``initializer_range=0.05``
rather than BERT's 0.02 so that its scores move away from 0.5 and a quantization error
shows in them. Built offline in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from shared.registry import ModelSpec, dump_registry

TASK = "text-classification"
FOLDER = "quantizable-bert"
SKIP = ["classifier"]

#: Registry options per variant; every variant loads the same checkpoint.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"dtype": "float32"},
    "bf16": {"dtype": "bfloat16"},
    "int8": {"quantization": {"method": "bnb-8bit", "skip_modules": SKIP}},
    "nf4": {
        "quantization": {
            "method": "bnb-4bit",
            "quant_type": "nf4",
            "double_quant": True,
            "skip_modules": SKIP,
        }
    },
    "fp4": {
        "quantization": {
            "method": "bnb-4bit",
            "quant_type": "fp4",
            "compute_dtype": "float32",
            "skip_modules": SKIP,
        }
    },
}


def alias(variant: str) -> str:
    return f"quant-{variant}"


def build(folder: Path, *, seed: int = 0) -> None:
    """Write the checkpoint (safetensors) and its tokenizer into ``folder``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from services.worker.tiny.text import wordpiece_tokenizer

    torch.manual_seed(seed)
    tokenizer = wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
        initializer_range=0.05,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_registry(folder: Path, *, variants: list[str] | None = None, **common: Any) -> Path:
    """Build the model in ``folder`` and a registry with one alias per variant.

    ``common`` options (``device_map``, ``batch``...) go into every entry.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / FOLDER / "config.json").exists():
        build(folder / FOLDER)
    specs = [
        ModelSpec.model_validate(
            {"alias": alias(name), "task": TASK, "source": FOLDER, **VARIANTS[name], **common}
        )
        for name in variants or list(VARIANTS)
    ]
    path = folder / "models.toml"
    path.write_text(tomli_w.dumps(dump_registry(specs)))
    return path
