"""Queue names, the routing table from task to queue, and how the queues are declared.

A job's queue follows from its task alone (:data:`ROUTES`), so a producer in any
language can route a job without asking pipeq. On RabbitMQ every work queue is a
durable quorum queue bound to the direct exchange ``pipeq`` under its own name,
with a delivery limit and a dead-letter exchange: a message that keeps killing
its worker is moved to the ``pipeq-dead`` queue instead of looping (or, past
RabbitMQ 4's default limit of 20, vanishing). The embedded filesystem transport
ignores those arguments.
"""

from __future__ import annotations

from typing import Any, Final

from kombu import Exchange, Queue

from shared.errors import UnsupportedTask

NLP: Final = "nlp"
VISION: Final = "vision"
AUDIO: Final = "audio"
TRAIN: Final = "train"
WORK_QUEUES: Final = (NLP, VISION, AUDIO, TRAIN)

EXCHANGE: Final = "pipeq"
DEAD_LETTER_EXCHANGE: Final = "pipeq-dlx"
DEAD_LETTER_QUEUE: Final = "pipeq-dead"
#: Deliveries after which RabbitMQ dead-letters a message (quorum queues).
DELIVERY_LIMIT: Final = 3

ROUTES: Final[dict[str, str]] = {
    "text-generation": NLP,
    "text-classification": NLP,
    "question-answering": NLP,
    "summarization": NLP,
    "translation": NLP,
    "token-classification": NLP,
    "fill-mask": NLP,
    "image-classification": VISION,
    "object-detection": VISION,
    "image-segmentation": VISION,
    "automatic-speech-recognition": AUDIO,
    "audio-classification": AUDIO,
    "fine-tune": TRAIN,
}


def queue_for(task: str) -> str:
    """The queue that serves ``task``; raises :class:`UnsupportedTask` for any other."""
    try:
        return ROUTES[task]
    except KeyError:
        known = ", ".join(sorted(ROUTES))
        raise UnsupportedTask(f"unknown task {task!r}; pipeq serves: {known}") from None


def _queue_arguments() -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    }


def kombu_queues(names: tuple[str, ...] = WORK_QUEUES, *, quorum: bool = True) -> list[Queue]:
    """The kombu declarations of the work queues ``names``."""
    exchange = Exchange(EXCHANGE, type="direct", durable=True)
    arguments = _queue_arguments() if quorum else None
    return [
        Queue(name, exchange, routing_key=name, durable=True, queue_arguments=arguments)
        for name in names
    ]


def dead_letter_queue(*, quorum: bool = True) -> Queue:
    """Where RabbitMQ moves rejected and over-delivered job messages."""
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
    arguments = {"x-queue-type": "quorum"} if quorum else None
    return Queue(DEAD_LETTER_QUEUE, exchange, durable=True, queue_arguments=arguments)
