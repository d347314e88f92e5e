"""deploy/rabbitmq/definitions.json on a real RabbitMQ: the code declares over it unharmed.

RabbitMQ refuses (PRECONDITION_FAILED, closing the channel) a declaration whose
arguments differ from an existing queue's. Here the definitions' exchanges, queues
and bindings are declared first, as RabbitMQ does when it loads the file at boot,
in a vhost of this test's own; then the worker's and producer's declarations from
shared/queues.py run over them. (The policies need RabbitMQ 3.12+ and are not tried
on this machine's 3.10.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import PreconditionFailed
from kombu import Connection, Queue

from shared.queues import WORK_QUEUES, dead_letter_queue, kombu_queues

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def declare_definitions(connection: Connection, data: dict[str, Any]) -> None:
    channel = connection.channel()
    for exchange in data["exchanges"]:
        channel.exchange_declare(
            exchange["name"],
            exchange["type"],
            durable=exchange["durable"],
            auto_delete=exchange["auto_delete"],
            arguments=exchange["arguments"],
        )
    for queue in data["queues"]:
        channel.queue_declare(
            queue["name"],
            durable=queue["durable"],
            auto_delete=queue["auto_delete"],
            arguments=queue["arguments"],
        )
    for binding in data["bindings"]:
        channel.queue_bind(binding["destination"], binding["source"], binding["routing_key"])
    channel.close()


def test_the_codes_declarations_agree_with_the_definitions(own_vhost: str) -> None:
    data = json.loads(DEFINITIONS.read_text())
    with Connection(own_vhost) as connection:
        declare_definitions(connection, data)
        channel = connection.channel()
        for queue in [*kombu_queues(WORK_QUEUES), dead_letter_queue()]:
            queue(channel).declare()  # raises PreconditionFailed on any difference
        # the bindings route as the code expects: a message to exchange pipeq, key nlp
        producer = connection.Producer(channel)
        producer.publish({"probe": 1}, exchange="pipeq", routing_key="nlp", serializer="json")
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = Queue("nlp", channel=channel).get(no_ack=True)
            time.sleep(0.05)
        assert message is not None and message.payload == {"probe": 1}


def test_a_mismatch_would_be_refused(own_vhost: str) -> None:
    """The check above can fail: the same queue with another delivery limit is refused."""
    (queue,) = kombu_queues(("vision",))
    arguments = {**(queue.queue_arguments or {}), "x-delivery-limit": 5}
    with Connection(own_vhost) as connection:
        declare_definitions(connection, json.loads(DEFINITIONS.read_text()))
        with pytest.raises(PreconditionFailed):
            Queue("vision", queue.exchange, "vision", queue_arguments=arguments)(
                connection.channel()
            ).declare()
