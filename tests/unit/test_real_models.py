"""Real weights, offline: the generation handler on SmolLM2-135M-Instruct says sensible things."""

from __future__ import annotations

import pytest

from services.worker.handlers import Loaded, handler_for
from shared.registry import ModelSpec
from tests.real_models import smollm2_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2() -> Loaded:
    spec = ModelSpec(alias="smollm2", task="text-generation", source=str(smollm2_folder()))
    return handler_for("text-generation").load(spec, "cpu")


def _generate(loaded: Loaded, prompt: str, raw: dict[str, object]) -> str:
    handler = handler_for("text-generation")
    params = handler.params(loaded.spec, raw)
    items, batched = handler.decode(prompt, params)
    result = handler.encode(handler.predict(loaded, items, params), params, batched)
    return str(result[0]["generated_text"])


def test_greedy_smollm2_knows_the_capital_of_france(smollm2: Loaded) -> None:
    text = _generate(smollm2, "The capital of France is", {"max_new_tokens": 8, "temperature": 0})
    assert text.startswith("The capital of France is")
    assert "Paris" in text[len("The capital of France is") :]


def test_seeded_sampling_repeats_and_only_new_text_comes_back(smollm2: Loaded) -> None:
    raw = {"max_new_tokens": 12, "do_sample": True, "seed": 5, "return_full_text": False}
    first = _generate(smollm2, "Once upon a time", raw)
    assert first and not first.startswith("Once upon a time")
    assert _generate(smollm2, "Once upon a time", raw) == first
