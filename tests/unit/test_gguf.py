"""A GGUF file named by ``gguf_file`` loads through transformers, model and tokenizer both.

The file is written here with the ``gguf`` package: a 2-layer llama with random
weights and a byte-level BPE tokenizer trained on a few sentences, so it loads in
well under a second (the real SmolLM2 GGUF takes ~17 s, mostly its 49k-token
vocabulary). transformers dequantizes GGUF on load, so the model holds float32
(or the registry's ``dtype``), which is what the memory estimate must expect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from services.worker.estimate import expected_bytes
from services.worker.loading import load_pretrained, load_processor, required_packages
from services.worker.memory import placement, tensor_bytes
from services.worker.tiny.text import CORPUS
from shared.registry import ModelSpec, load_registry

HIDDEN, LAYERS, FFN, HEADS, KV_HEADS = 64, 2, 128, 4, 2


def _bpe_vocabulary() -> tuple[list[str], list[str]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 4, trainer)
    data = json.loads(bpe.to_str())
    vocab = sorted(data["model"]["vocab"].items(), key=lambda item: item[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return [token for token, _ in vocab], merges


def write_tiny_gguf(path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    tokens, merges = _bpe_vocabulary()
    writer = GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    kv = HIDDEN // HEADS * KV_HEADS
    tensor("token_embd.weight", len(tokens), HIDDEN)
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
        for name, shape in (
            ("attn_q", (HIDDEN, HIDDEN)),
            ("attn_k", (kv, HIDDEN)),
            ("attn_v", (kv, HIDDEN)),
            ("attn_output", (HIDDEN, HIDDEN)),
            ("ffn_gate", (FFN, HIDDEN)),
            ("ffn_up", (FFN, HIDDEN)),
            ("ffn_down", (HIDDEN, FFN)),
        ):
            tensor(f"blk.{i}.{name}.weight", *shape)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    write_tiny_gguf(folder / "tiny.gguf")
    return folder


def _spec(folder: Path, **options: Any) -> ModelSpec:
    entry = {"task": "text-generation", "source": ".", "gguf_file": "tiny.gguf", **options}
    path = folder / "models.toml"
    path.write_text(tomli_w.dumps({"models": {"llm": entry}}))
    return load_registry(path).get("llm")


@pytest.mark.parametrize(("dtype", "held"), [("auto", "float32"), ("bfloat16", "bfloat16")])
def test_gguf_model_and_tokenizer_load(folder: Path, dtype: str, held: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = _spec(folder, dtype=dtype)
    assert "gguf" in required_packages(spec)
    model = load_pretrained(AutoModelForCausalLM, spec, "cpu")
    tokenizer = load_processor(AutoTokenizer, spec)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == LAYERS and model.config.hidden_size == HIDDEN
    assert placement(model)["dtypes"] == [held]
    text = "The capital of France is"
    ids = tokenizer(text, return_tensors="pt")
    assert tokenizer.decode(ids["input_ids"][0]) == text
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    assert expected_bytes(spec) == pytest.approx(tensor_bytes(model), rel=0.05)
