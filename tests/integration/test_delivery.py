"""The delivery settings, checked on the real broker rather than read off the configuration."""

from __future__ import annotations

import pytest
from amqp.exceptions import NotFound

from shared.celery_app import make_app
from shared.settings import Settings


def test_publishes_wait_for_the_brokers_confirmation(settings: Settings) -> None:
    app = make_app(settings)
    with app.connection_for_write() as connection:
        producer = connection.Producer()
        assert connection.connection.confirm_publish
        # Without confirms this publish would "succeed" and the message vanish; with them,
        # the broker's refusal reaches the publisher before publish() returns.
        with pytest.raises(NotFound, match="no exchange"):
            producer.publish(
                {"x": 1}, exchange="pipeq-no-such-exchange", routing_key="nlp", serializer="json"
            )


def test_workers_ack_late_reject_on_loss_and_accept_json_only(settings: Settings) -> None:
    conf = make_app(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert list(conf.accept_content) == ["json"] and conf.task_serializer == "json"
    assert conf.worker_prefetch_multiplier == 1
