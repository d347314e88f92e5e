"""The worker's event connection publishes without confirms; job publishes keep them."""

from __future__ import annotations

from types import SimpleNamespace

from services.worker.consumer import JobConsumer
from shared.celery_app import make_app
from shared.settings import Settings


def test_events_are_sent_without_confirms_and_jobs_with_them() -> None:
    settings = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//", database_url="")
    app = make_app(settings)
    consumer = SimpleNamespace(app=app, ensure_connected=lambda connection: connection)
    events = JobConsumer.connection_for_write(consumer, heartbeat=10)  # type: ignore[arg-type]
    jobs = app.connection_for_write()
    assert events.transport_options["confirm_publish"] is False
    assert events.heartbeat == 10
    assert jobs.transport_options["confirm_publish"] is True
