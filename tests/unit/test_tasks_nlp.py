"""The nlp queue's tasks: each handler answers as transformers does, and refuses bad input.

For every task and parameter set the handler's result (params -> decode ->
predict -> encode, on the tiny model) equals :func:`tests.references.reference`:
the pipeline, or for summarization, translation and question answering an
independent Auto-class computation.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.errors import InvalidInput, InvalidParameter
from tests.references import close, reference
from tests.unit.conftest import TaskRunner

CONTEXT = "Paris is the capital of France and Berlin is the capital of Germany."
LONG_CONTEXT = " ".join(
    ["The quick brown fox jumps over the lazy dog.", "My name is Sarah and I live in London."] * 12
)
QUESTION = {"question": "What is the capital of France?", "context": CONTEXT}

CASES: list[tuple[str, Any, dict[str, Any]]] = [
    ("text-generation", "The capital of France is", {}),
    ("text-generation", ["Hello world", "The quick brown fox jumps over"], {"max_new_tokens": 5}),
    (
        "text-generation",
        "Hello world",
        {"do_sample": True, "seed": 3, "top_k": 5, "top_p": 0.9, "temperature": 0.8},
    ),
    ("text-generation", "Hello world", {"num_beams": 3, "num_return_sequences": 2}),
    (
        "text-generation",
        "Hello",
        {"temperature": 0, "do_sample": True, "repetition_penalty": 1.5, "return_full_text": False},
    ),
    ("summarization", LONG_CONTEXT, {}),
    ("summarization", [CONTEXT, "I love this movie"], {"max_new_tokens": 6, "num_beams": 2}),
    ("summarization", LONG_CONTEXT, {"max_length": 16, "padding": "max_length"}),
    ("summarization", CONTEXT, {"do_sample": True, "seed": 11, "top_k": 10}),
    ("summarization", [CONTEXT], {"num_beams": 2, "num_return_sequences": 2}),
    ("translation", "I love this movie", {}),
    ("translation", ["I love this movie", CONTEXT], {"tgt_lang": "deu_Latn"}),
    ("translation", CONTEXT, {"src_lang": "fra_Latn", "tgt_lang": "eng_Latn", "num_beams": 2}),
    ("question-answering", QUESTION, {}),
    ("question-answering", QUESTION, {"top_k": 3, "max_answer_len": 4}),
    (
        "question-answering",
        [QUESTION, {"question": "Where does Sarah live?", "context": LONG_CONTEXT}],
        {"max_length": 32, "doc_stride": 8},
    ),
    ("question-answering", QUESTION, {"handle_impossible_answer": True, "top_k": 2}),
    ("question-answering", QUESTION, {"align_to_words": False, "top_k": 2}),
    ("token-classification", "My name is Sarah and I live in London.", {}),
    (
        "token-classification",
        ["My name is Sarah", "I live in London"],
        {"aggregation_strategy": "none"},
    ),
    ("token-classification", "My name is Sarah", {"aggregation_strategy": "first"}),
    ("token-classification", "My name is Sarah", {"aggregation_strategy": "average"}),
    (
        "token-classification",
        "My name is Sarah",
        {"aggregation_strategy": "max", "ignore_labels": []},
    ),
    ("token-classification", LONG_CONTEXT * 2, {"aggregation_strategy": "first", "stride": 16}),
    ("fill-mask", "Paris is the [MASK] of France.", {}),
    ("fill-mask", ["Paris is the [MASK] of France.", "I [MASK] this movie"], {"top_k": 2}),
    ("fill-mask", "Paris is the [MASK] of France.", {"targets": ["capital", "movie", "day"]}),
    ("fill-mask", "[MASK] is the [MASK] of France.", {"top_k": 2}),
]


@pytest.mark.parametrize(("task", "inputs", "params"), CASES)
def test_equals_transformers(
    run_task: TaskRunner, task: str, inputs: Any, params: dict[str, Any]
) -> None:
    got = run_task(task, inputs, params)
    want = reference(task, run_task.model_dir(task), inputs, run_task.effective(task, params))
    assert close(got, want), f"{got!r}\n!=\n{want!r}"


def test_a_list_in_is_a_list_out_in_order(run_task: TaskRunner) -> None:
    texts = ["Hello world", "The quick brown fox", "I love"]
    together = run_task("text-generation", texts, {"max_new_tokens": 3})
    alone = [run_task("text-generation", text, {"max_new_tokens": 3})[0] for text in texts]
    assert [r[0]["generated_text"][: len(t)] for r, t in zip(together, texts, strict=True)] == texts
    assert len(together) == 3 and all(len(r) == 1 for r in together)
    assert [a["generated_text"][: len(t)] for a, t in zip(alone, texts, strict=True)] == texts


def test_seeded_sampling_is_reproducible(run_task: TaskRunner) -> None:
    sampled = {"do_sample": True, "temperature": 1.5, "max_new_tokens": 12}
    first = run_task("text-generation", "Hello", {**sampled, "seed": 1})
    assert run_task("text-generation", "Hello", {**sampled, "seed": 1}) == first
    others = [run_task("text-generation", "Hello", {**sampled, "seed": s}) for s in (2, 3, 4)]
    assert any(other != first for other in others)


def test_temperature_zero_is_greedy(run_task: TaskRunner) -> None:
    greedy = run_task("summarization", CONTEXT, {"do_sample": False})
    assert run_task("summarization", CONTEXT, {"do_sample": True, "temperature": 0}) == greedy


@pytest.mark.parametrize(
    ("task", "inputs", "params", "error", "fragment"),
    [
        ("text-generation", "", {}, InvalidInput, "inputs: the text is empty"),
        ("text-generation", ["ok", "  "], {}, InvalidInput, "inputs[1]: the text is empty"),
        ("text-generation", "hi", {"max_new_tokens": 0}, InvalidParameter, "max_new_tokens"),
        ("text-generation", "hi", {"max_new_tokens": 5000}, InvalidParameter, "<= 1024"),
        ("text-generation", "hi", {"temperature": -1}, InvalidParameter, "temperature"),
        (
            "text-generation",
            "hi",
            {"top_p": 0},
            InvalidParameter,
            "'top_p': input should be greater than 0",
        ),
        ("text-generation", "hi", {"top_p": 1.5}, InvalidParameter, "less than or equal to 1"),
        ("text-generation", "hi", {"num_beams": 0}, InvalidParameter, "num_beams"),
        (
            "text-generation",
            "hi",
            {"repetition_penalty": 0},
            InvalidParameter,
            "repetition_penalty",
        ),
        ("text-generation", "hi", {"seed": -1}, InvalidParameter, "seed"),
        ("text-generation", "hi", {"max_new_tokens": "5"}, InvalidParameter, "valid integer"),
        ("text-generation", "hi", {"colour": 1}, InvalidParameter, "unknown parameter"),
        (
            "text-generation",
            "hi",
            {"num_return_sequences": 2},
            InvalidParameter,
            "num_return_sequences",
        ),
        ("text-generation", "word " * 125, {}, InvalidInput, "exceeds this model's limit of 128"),
        ("summarization", "   ", {}, InvalidInput, "empty"),
        ("summarization", "hi", {"max_length": 4096}, InvalidParameter, "<= 128"),
        ("translation", "hi", {"tgt_lang": "xx_Yyyy"}, InvalidParameter, "unknown language code"),
        ("translation", "hi", {"src_lang": "bad lang"}, InvalidParameter, "src_lang"),
        ("question-answering", {"question": "Who?"}, {}, InvalidInput, "needs a context"),
        ("question-answering", {"question": "Who?", "context": ""}, {}, InvalidInput, "empty"),
        ("question-answering", "Who?", {}, InvalidInput, '{"question"'),
        (
            "question-answering",
            [QUESTION, {"context": "x"}],
            {},
            InvalidInput,
            "inputs[1]: no question",
        ),
        ("question-answering", QUESTION, {"top_k": 0}, InvalidParameter, "top_k"),
        (
            "question-answering",
            {"question": "why " * 40, "context": CONTEXT},
            {"max_length": 32},
            InvalidInput,
            "leaves no room for the context",
        ),
        ("token-classification", "", {}, InvalidInput, "empty"),
        (
            "token-classification",
            "hi",
            {"aggregation_strategy": "most"},
            InvalidParameter,
            "'simple'",
        ),
        (
            "token-classification",
            "hi",
            {"stride": 8, "aggregation_strategy": "none"},
            InvalidParameter,
            "stride",
        ),
        ("fill-mask", "no mask here", {}, InvalidInput, "no mask token [MASK]"),
        ("fill-mask", "hi [MASK]", {"top_k": 0}, InvalidParameter, "top_k"),
        ("fill-mask", "hi [MASK]", {"padding": "yes"}, InvalidParameter, "or input should be"),
    ],
)
def test_bad_input_is_refused_clearly(
    run_task: TaskRunner,
    task: str,
    inputs: Any,
    params: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        run_task(task, inputs, params)


def test_a_multilingual_model_needs_its_languages(run_task: TaskRunner) -> None:
    from services.worker.handlers import handler_for

    handler = handler_for("translation")
    spec = run_task.spec("translation").model_copy(update={"defaults": {}})
    params = handler.params(spec, {"src_lang": "eng_Latn"})
    with pytest.raises(InvalidParameter, match=r"tgt_lang.*multilingual.*deu_Latn"):
        handler.predict(run_task.loaded("translation"), ["hi"], params)


def test_one_bad_item_fails_only_its_own_job() -> None:
    from services.worker.handlers.base import ItemError, check_items

    check_items([[{"generated_text": "ok"}]], batched=False)
    with pytest.raises(InvalidInput, match=r"^inputs\[1\]: too long$"):
        check_items([["ok"], ItemError("too long")], batched=True)
