"""Task parameters: strict schemas, ranges in the error, registry defaults and caps."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.worker.handlers import HANDLERS, handler_for
from shared.errors import InvalidParameter
from shared.params import PARAMS, validate_params
from shared.params.generation import MAX_NEW_TOKENS_CAP
from shared.params.nlp import TextGenerationParams
from shared.queues import ROUTES
from shared.registry import ModelSpec


def test_every_inference_task_has_a_schema_and_a_handler() -> None:
    inference = {task for task, queue in ROUTES.items() if queue != "train"}
    assert set(PARAMS) - {"fine-tune"} == inference == set(HANDLERS)
    assert "fine-tune" in PARAMS  # its own schema; run by services/worker/training, no handler


@pytest.mark.parametrize(
    ("task", "raw", "message"),
    [
        (
            "text-classification",
            {"padding": "yes"},
            "parameter 'padding': input should be a valid boolean, or input should be "
            "'longest', 'max_length' or 'do_not_pad' (got 'yes')",
        ),
        (
            "text-generation",
            {"top_p": 0},
            "parameter 'top_p': input should be greater than 0 (got 0)",
        ),
        (
            "text-generation",
            {"temperature": -0.5},
            "parameter 'temperature': input should be greater than or equal to 0 (got -0.5)",
        ),
        (
            "text-generation",
            {"max_new_tokens": True},
            "parameter 'max_new_tokens': input should be a valid integer (got True)",
        ),
        (
            "text-generation",
            {"num_beams": 2, "num_return_sequences": 3},
            "parameter 'num_return_sequences': must be <= num_beams (2) with beam search (got 3)",
        ),
        (
            "object-detection",
            {"threshold": 2},
            "parameter 'threshold': input should be less than or equal to 1 (got 2)",
        ),
        (
            "automatic-speech-recognition",
            {"chunk_length_s": 10, "stride_length_s": 6},
            "parameter 'stride_length_s': must be < chunk_length_s / 2 = 5 (got 6)",
        ),
        (
            "token-classification",
            {"stride": 16},
            "parameter 'stride': needs an aggregation_strategy other than 'none' to merge windows",
        ),
        ("translation", {"tgt_lang": "fr; drop"}, "parameter 'tgt_lang': string should match"),
        ("fill-mask", {"targets": []}, "parameter 'targets': list should have at least 1 item"),
    ],
)
def test_errors_name_the_parameter_and_the_range(
    task: str, raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        validate_params(task, raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_unknown_parameters_list_the_accepted_ones() -> None:
    with pytest.raises(
        InvalidParameter, match=r"'beams': unknown parameter; accepted: .*num_beams"
    ):
        validate_params("summarization", {"beams": 2})


def test_every_parameter_at_fault_is_named_not_only_the_first() -> None:
    raw = {"max_new_tokens": 0, "temperature": "hot", "beams": 2}
    with pytest.raises(InvalidParameter) as caught:
        validate_params("text-generation", raw)
    assert [problem.name for problem in caught.value.every] == [
        "max_new_tokens",
        "temperature",
        "beams",
    ]
    assert str(caught.value) == (
        "parameter 'max_new_tokens': input should be greater than or equal to 1 (got 0); "
        "parameter 'temperature': input should be a valid number (got 'hot'); "
        "parameter 'beams': unknown parameter; accepted: do_sample, max_new_tokens, "
        "num_beams, num_return_sequences, repetition_penalty, return_full_text, seed, "
        "temperature, top_k, top_p"
    )


def _spec(**fields: Any) -> ModelSpec:
    return ModelSpec(alias="m", task="text-generation", source="org/m", **fields)


def test_caps_come_from_the_registry_or_the_default() -> None:
    handler = handler_for("text-generation")
    assert handler.params(_spec(), {}).max_new_tokens == 64
    with pytest.raises(InvalidParameter, match=f"<= {MAX_NEW_TOKENS_CAP} for model 'm'"):
        handler.params(_spec(), {"max_new_tokens": MAX_NEW_TOKENS_CAP + 1})
    roomy = _spec(limits={"max_new_tokens": 4096})
    assert handler.params(roomy, {"max_new_tokens": 3000}).max_new_tokens == 3000
    tight = _spec(limits={"max_new_tokens": 16})
    assert handler.params(tight, {}).max_new_tokens == 16, "a default above the cap is lowered"
    assert handler.params(tight, {"max_new_tokens": 16}).max_new_tokens == 16
    with pytest.raises(InvalidParameter, match=re.escape("must be <= 16 for model 'm' (got 17)")):
        handler.params(tight, {"max_new_tokens": 17})


def test_registry_defaults_sit_under_the_jobs_own() -> None:
    handler = handler_for("text-generation")
    spec = _spec(defaults={"max_new_tokens": 8, "num_beams": 2})
    params = handler.params(spec, {"num_beams": 3})
    assert (params.max_new_tokens, params.num_beams) == (8, 3)


@pytest.mark.parametrize(
    ("raw", "model_samples", "expected"),
    [
        ({}, False, {"do_sample": False}),
        ({}, True, {"do_sample": True}),
        ({"temperature": 0.7, "top_k": 5}, False, {"do_sample": False}),
        (
            {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 0.5},
            False,
            {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 0.5},
        ),
        ({"do_sample": True, "temperature": 0}, True, {"do_sample": False}),
        ({"do_sample": True, "num_beams": 4, "top_p": 0.5}, False, {"do_sample": False}),
        ({"do_sample": False}, True, {"do_sample": False}),
        ({"repetition_penalty": 1.2}, False, {"do_sample": False, "repetition_penalty": 1.2}),
    ],
)
def test_sampling_rules(raw: dict[str, Any], model_samples: bool, expected: dict[str, Any]) -> None:
    params = TextGenerationParams.model_validate(raw)
    kwargs = params.generate_kwargs(model_samples=model_samples)
    fixed = {"max_new_tokens", "num_beams", "num_return_sequences"}
    assert {k: v for k, v in kwargs.items() if k not in fixed} == expected


def test_several_sequences_need_sampling_or_beams() -> None:
    params = TextGenerationParams.model_validate({"num_return_sequences": 2})
    with pytest.raises(InvalidParameter, match=r"num_return_sequences.*greedy"):
        params.generate_kwargs(model_samples=False)
    assert params.generate_kwargs(model_samples=True)["num_return_sequences"] == 2
