"""The producer's delivery: idempotent resubmits, and how long a publish keeps trying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.client import Client, retry_policy
from shared.db import migrate
from shared.errors import InvalidJob
from shared.settings import get_settings


def _messages(home: Path) -> list[Path]:
    return sorted((home / "broker" / "queue").glob("*.msg"))


def test_a_resubmit_of_a_queued_job_publishes_it_again(embedded_env: Path) -> None:
    migrate.upgrade()
    client = Client(get_settings())
    first = client.submit("text-classification", "m", "hello", idempotency_key="order-1")
    assert len(_messages(embedded_env)) == 1
    again = client.submit("text-classification", "m", "hello", idempotency_key="order-1")
    assert again.id == first.id and again.state == "QUEUED"
    # The first publish may have died with the producer: a second copy is harmless.
    assert len(_messages(embedded_env)) == 2
    assert len(client.list()) == 1


def test_a_key_reused_for_another_job_is_refused(embedded_env: Path) -> None:
    migrate.upgrade()
    client = Client(get_settings())
    client.submit("text-classification", "m", "hello", idempotency_key="order-2")
    with pytest.raises(InvalidJob, match="idempotency key 'order-2' was used for job"):
        client.submit("text-classification", "m", "other text", idempotency_key="order-2")
    with pytest.raises(InvalidJob):
        client.submit("text-classification", "m", "hello", {"top_k": 2}, idempotency_key="order-2")
    assert len(_messages(embedded_env)) == 1


def test_a_publish_keeps_trying_for_about_the_configured_time() -> None:
    for seconds in (0.0, 5.0, 30.0, 120.0):
        policy = retry_policy(seconds)
        waited, interval = 0.0, policy["interval_start"]
        for _ in range(int(policy["max_retries"])):
            waited += interval
            interval = min(interval + policy["interval_step"], policy["interval_max"])
        assert seconds <= waited < seconds + policy["interval_max"] + 0.01


def test_a_messages_headers_name_its_task_and_model_but_not_its_inputs(
    embedded_env: Path,
) -> None:
    migrate.upgrade()
    client = Client(get_settings())
    client.submit_many([{"task": "text-classification", "model": "m", "inputs": "my secret"}])
    (path,) = _messages(embedded_env)
    message = json.loads(path.read_text())
    assert message["headers"]["argsrepr"] == "[text-classification on m]"
    assert "my secret" not in json.dumps(message["headers"])  # only in the body
