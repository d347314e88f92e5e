"""The job message contract: what parse_job accepts and how it refuses."""

from __future__ import annotations

import math
import uuid

import pytest

from shared.errors import InvalidInput, InvalidJob, InvalidParameter, UnsupportedTask
from shared.jobs import JobRequest, parse_job

GOOD = {"task": "text-classification", "model": "tiny-text-classification", "inputs": "hi"}


def test_minimal_job_parses() -> None:
    request = parse_job(GOOD)
    assert request.queue == "nlp" and request.params == {} and request.priority == 0
    assert request.with_id().id is not None
    uuid.UUID(request.with_id().id or "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": None}, "task"),
        ({"model": "../etc/passwd"}, "model"),
        ({"model": "org/some-hub-model"}, "model"),
        ({"priority": 10}, "priority"),
        ({"id": "not-a-uuid"}, "UUID"),
        ({"revision": "main"}, "revision"),
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"source": "/tmp/model"}, "source"),
    ],
)
def test_malformed_jobs_name_the_field(change: dict[str, object], message: str) -> None:
    raw = {**GOOD, **change}
    if change.get("task", "") is None:
        del raw["task"]
    with pytest.raises(InvalidJob, match=message):
        parse_job(raw)


def test_not_an_object() -> None:
    with pytest.raises(InvalidJob, match="JSON object"):
        parse_job(["text-classification"])


def test_unknown_task() -> None:
    with pytest.raises(UnsupportedTask, match="unknown task 'sing'"):
        parse_job({**GOOD, "task": "sing"})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(bad: float) -> None:
    with pytest.raises(InvalidJob, match="NaN and infinity"):
        parse_job({**GOOD, "params": {"top_k": bad}})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"top_k": 0}, "'top_k': input should be greater than or equal to 1 (got 0)"),
        ({"top_k": "2"}, "'top_k'"),
        ({"temperature": 0.5}, "unknown parameter; accepted:"),
        ({"max_length": -3}, "'max_length'"),
        ({"function_to_apply": "tanh"}, "'function_to_apply'"),
    ],
)
def test_parameters_are_checked(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_job({**GOOD, "params": params})
    assert fragment in str(caught.value)


def test_requests_are_frozen() -> None:
    request = JobRequest.model_validate(GOOD)
    with pytest.raises(Exception, match="frozen"):
        request.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("task", "most"),
    [
        ("text-classification", 1024),
        ("question-answering", 256),
        ("image-classification", 256),
        ("automatic-speech-recognition", 256),
    ],
)
def test_too_many_inputs_are_refused_at_submit(task: str, most: int) -> None:
    # The worker refused them too, but only after submit had said yes.
    parse_job({"task": task, "model": "m", "inputs": ["x"] * most})
    with pytest.raises(InvalidInput, match=f"^inputs: {most + 1} items in one job; the limit is"):
        parse_job({"task": task, "model": "m", "inputs": ["x"] * (most + 1)})
