"""publish_all on a real RabbitMQ: a call's messages reach queues that did not exist before it.

``publish_all`` declares each queue its jobs go to once, before its first message, and sends
the messages without a declaration of their own; a broker that has never seen the queues
(a vhost of this test's own, no worker started) must still hold every message, each in its
task's queue.
"""

from __future__ import annotations

from kombu import Connection

from shared.celery_app import make_app
from shared.jobs import parse_job
from shared.publishing import publish_all
from shared.settings import Settings


def test_one_call_fills_queues_it_declares_itself_each_with_its_own_jobs(
    own_vhost: str,
) -> None:
    app = make_app(Settings(broker_url=own_vhost))
    jobs = [
        {"task": "text-classification", "model": "m", "inputs": f"text {i}"} for i in range(3)
    ] + [{"task": "image-classification", "model": "v", "inputs": "aGVsbG8="}]
    requests = [parse_job(job).with_id() for job in jobs]
    publish_all(app, [(r.model_dump(mode="json", exclude_none=True), r) for r in requests])
    with Connection(own_vhost) as connection:
        channel = connection.channel()
        counts = {
            name: channel.queue_declare(name, passive=True).message_count
            for name in ("nlp", "vision")
        }
    assert counts == {"nlp": 3, "vision": 1}
