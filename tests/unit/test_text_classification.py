"""text-classification: the handler answers exactly as the transformers pipeline does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.worker.handlers import Loaded, handler_for
from shared.errors import InvalidInput, InvalidParameter
from shared.registry import load_registry

TASK = "text-classification"


@pytest.fixture(scope="module")
def loaded(tiny_registry: Path) -> Loaded:
    spec = load_registry(tiny_registry).get(f"tiny-{TASK}")
    return handler_for(TASK).load(spec, "cpu")


def _run(loaded: Loaded, inputs: Any, raw_params: dict[str, Any]) -> Any:
    handler = handler_for(TASK)
    params = handler.params(loaded.spec, raw_params)
    items, batched = handler.decode(inputs, params)
    return handler.encode(handler.predict(loaded, items, params), params, batched)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5
    return bool(a == b)


@pytest.mark.parametrize(
    ("inputs", "params"),
    [
        ("I love this movie", {}),
        (["I love this movie", "the food was awful", "ok"], {}),
        ("I love this movie", {"top_k": 2}),
        (["great day", "awful"], {"top_k": None}),
        ("great day", {"function_to_apply": "sigmoid", "top_k": 1}),
        ("a long text " * 200, {"max_length": 16}),
    ],
)
def test_equals_the_pipeline(loaded: Loaded, inputs: Any, params: dict[str, Any]) -> None:
    from transformers import pipeline

    reference = pipeline(TASK, model=loaded.spec.location)
    kwargs = {"truncation": True, "padding": False, **params}
    batch = len(inputs) if isinstance(inputs, list) else 1
    expected = reference(inputs, batch_size=batch, **kwargs)
    assert _close(_run(loaded, inputs, params), expected)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [("", "empty"), ("   ", "empty"), ([], "empty"), (["ok", 3], "inputs[1]"), ({"t": 1}, "text")],
)
def test_bad_inputs(loaded: Loaded, inputs: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(fragment)):
        _run(loaded, inputs, {})


def test_max_length_above_the_model_limit(loaded: Loaded) -> None:
    with pytest.raises(InvalidParameter, match=r"max_length.*<= 128"):
        _run(loaded, "hi", {"max_length": 4096})
