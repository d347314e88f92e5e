"""bitsandbytes 8-bit and 4-bit on CPU: smaller, close to fp32, and the loaded model says so.

The model (``services/worker/tiny/quantizable.py``) is a 4-layer BERT whose Linear
layers hold 97% of its parameters. Tolerances, against the fp32 model on the same
inputs, through the text-classification handler (what a job returns):

- int8 (per-row absmax, 255 levels): a weight moves by at most 0.4% of its row's
  largest, so scores move by well under 0.02 and the label never changes.
- 4-bit (16 levels per block of 64 weights): up to ~7% of the block's largest per
  weight, compounding over 4 layers; scores may move by up to 0.06, labels stay.
- Hidden states (token-wise cosine to fp32): >= 0.995 (int8), >= 0.9 (4-bit).

Measured here (max score change / min cosine): int8 0.006 / 0.9996, nf4 0.022 / 0.962,
fp4 0.036 / 0.945; bfloat16, for scale, 0.003 / 0.9999.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.worker.estimate import expected_bytes
from services.worker.handlers import Loaded, handler_for
from services.worker.memory import placement, tensor_bytes
from services.worker.registry import Models
from services.worker.tiny.quantizable import TASK, alias, write_registry
from services.worker.tiny.text import CORPUS
from shared.registry import Registry, load_registry

TOLERANCE = {"int8": (0.02, 0.995), "nf4": (0.06, 0.9), "fp4": (0.06, 0.9)}
RATIO = {"int8": 0.75, "nf4": 0.7, "fp4": 0.7}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return load_registry(write_registry(tmp_path_factory.mktemp("quantizable")))


@pytest.fixture(scope="module")
def models(registry: Registry) -> Models:
    return Models(registry, device="cpu", queues=("nlp",))


def _scores(loaded: Loaded) -> list[dict[str, Any]]:
    handler = handler_for(TASK)
    params = handler.params(loaded.spec, {"top_k": None})
    outputs = handler.predict(loaded, CORPUS, params)
    return [{d["label"]: d["score"] for d in out} for out in outputs]


def _hidden(loaded: Loaded) -> Any:
    import torch

    batch = loaded.processor(CORPUS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded.model(**batch, output_hidden_states=True)
    return out.hidden_states[-1].float()[batch["attention_mask"].bool()]


@pytest.mark.parametrize("variant", ["int8", "nf4", "fp4"])
def test_quantized_is_smaller_and_close(models: Models, variant: str) -> None:
    import torch

    reference, quantized = models.get(alias("fp32")), models.get(alias(variant))
    ratio = quantized.tensor_bytes / reference.tensor_bytes
    assert ratio < RATIO[variant], f"{variant}: {ratio:.3f} of fp32"

    where = placement(quantized.model)
    assert where["quantization"] == ("bnb-8bit" if variant == "int8" else "bnb-4bit")
    assert ("int8" if variant == "int8" else "uint8") in where["dtypes"]
    flag = "is_loaded_in_8bit" if variant == "int8" else "is_loaded_in_4bit"
    assert getattr(quantized.model, flag) is True
    assert where["devices"] == ["cpu"]

    max_score, min_cosine = TOLERANCE[variant]
    expected, got = _scores(reference), _scores(quantized)
    for ref, out in zip(expected, got, strict=True):
        assert max(ref, key=ref.__getitem__) == max(out, key=out.__getitem__)
        assert max(abs(ref[label] - out[label]) for label in ref) <= max_score
    cosine = torch.nn.functional.cosine_similarity(_hidden(reference), _hidden(quantized))
    assert cosine.min().item() >= min_cosine


def test_four_bit_options_reach_bitsandbytes(registry: Registry) -> None:
    # Models of their own, never run: on a CPU with AVX512-BF16, bitsandbytes repacks 4-bit
    # weights at their first inference forward and unnests the double-quantized absmax then.
    fresh = Models(registry, device="cpu", queues=("nlp",))
    nf4 = fresh.get(alias("nf4")).model.bert.encoder.layer[0].attention.self.query.weight
    fp4 = fresh.get(alias("fp4")).model.bert.encoder.layer[0].attention.self.query.weight
    assert nf4.quant_state.quant_type == "nf4" and nf4.quant_state.nested
    assert fp4.quant_state.quant_type == "fp4" and not fp4.quant_state.nested
    classifier = fresh.get(alias("nf4")).model.classifier.weight
    assert str(classifier.dtype) == "torch.float32"  # skipped: kept in full precision


def test_bfloat16_is_half_of_fp32(models: Models) -> None:
    bf16 = models.get(alias("bf16"))
    assert placement(bf16.model)["dtypes"] == ["bfloat16"]
    assert bf16.tensor_bytes == pytest.approx(models.get(alias("fp32")).tensor_bytes / 2, rel=0.01)


def test_quantization_state_is_counted(models: Models) -> None:
    quantized = models.get(alias("nf4")).model
    packed = sum(p.numel() * p.element_size() for p in quantized.parameters())
    assert tensor_bytes(quantized) > packed  # block scales and code books count too


@pytest.mark.parametrize("variant", ["fp32", "bf16", "int8", "nf4", "fp4"])
def test_estimate_before_loading_is_close(models: Models, variant: str) -> None:
    loaded = models.get(alias(variant))
    assert expected_bytes(loaded.spec) == pytest.approx(loaded.tensor_bytes, rel=0.1)
