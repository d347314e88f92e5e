"""Routing: every task has one queue, declared durable, quorum and dead-lettered."""

from __future__ import annotations

import pytest

from shared.errors import UnsupportedTask
from shared.queues import (
    DEAD_LETTER_EXCHANGE,
    ROUTES,
    WORK_QUEUES,
    dead_letter_queue,
    kombu_queues,
    queue_for,
)


def test_every_route_goes_to_a_work_queue() -> None:
    assert set(ROUTES.values()) == set(WORK_QUEUES)
    assert queue_for("text-classification") == "nlp"
    assert queue_for("image-classification") == "vision"
    assert queue_for("automatic-speech-recognition") == "audio"
    assert queue_for("fine-tune") == "train"


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnsupportedTask, match="text-classification"):
        queue_for("text-to-speech")


def test_queue_declarations() -> None:
    queues = {queue.name: queue for queue in kombu_queues()}
    assert set(queues) == set(WORK_QUEUES)
    for name, queue in queues.items():
        assert queue.durable and queue.routing_key == name
        assert queue.queue_arguments == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 3,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        }
        assert "." not in name  # the embedded filesystem transport splits names on dots
    assert all(q.queue_arguments is None for q in kombu_queues(quorum=False))
    assert dead_letter_queue().exchange.name == DEAD_LETTER_EXCHANGE
