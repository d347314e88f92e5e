"""The consumer of ``pipeq-dead``: each dead letter settled against its row, then acked.

Where it runs: a thread in every worker (``services.worker.main``). Workers
already hold broker and database credentials, every deployment runs them, and
as long as one worker of any queue is up, dead letters are settled within
seconds; settling is idempotent, so competing consumers on the one queue are
harmless. A dedicated service would be one more thing to deploy and watch, and
beat runs once, so its outage would stall the queue. ``drain()`` settles what is
there and returns, for an operator or a periodic task.

Order of effects, so that a crash at any point loses nothing: the row's write
commits, then a redriven message is published with confirms, then the dead
letter is acked. A crash in between redelivers the dead letter; settling it again
finds the row terminal (DONE), or redrives once more (a duplicate message for a
job is harmless: the state machine runs it once). Bodies are read as JSON or not
at all (``on_message``: kombu never decodes them, so nothing is unpickled).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kombu import Connection, Consumer, Message
from kombu.mixins import ConsumerProducerMixin

from shared.db.engine import session_scope
from shared.deadletters import DeadLetter, Verdict, redrive_headers, settle
from shared.errors import DatabaseUnavailable
from shared.queues import EXCHANGE, dead_letter_queue
from shared.retrying import with_backoff
from shared.settings import Settings

log = logging.getLogger(__name__)


class DeadLetterConsumer(ConsumerProducerMixin):  # type: ignore[misc]
    """Settles every message of ``pipeq-dead``; reconnects when the broker comes back."""

    def __init__(
        self, connection: Connection, settings: Settings, *, db_retry_seconds: float = 60.0
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.db_url = settings.resolved_database_url
        self.db_retry_seconds = db_retry_seconds
        self.settled: dict[str, int] = {}

    def get_consumers(self, consumer: type[Consumer], channel: Any) -> list[Consumer]:
        queue = dead_letter_queue()
        queue(channel).declare()
        return [consumer(queues=[queue], on_message=self.handle, prefetch_count=8)]

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        log.warning(
            "dead-letter consumer: broker unavailable (%s); retrying in %.0f s", exc, interval
        )

    def handle(self, message: Message) -> None:
        try:
            self._handle(message)
        except Exception:  # a bug: keep the thread alive, keep the reason in the log
            log.exception("dead letter could not be settled; dropped")
            message.ack()

    def _handle(self, message: Message) -> None:
        letter = DeadLetter.read(message.headers or {}, message.body, message.content_type)
        try:
            verdict, job_id = self._settle(letter)
        except DatabaseUnavailable as exc:
            log.warning(
                "dead letter %s: database away, handed back: %s",
                letter.task_id,
                exc,
                extra={"job_id": letter.job_id},
            )
            message.requeue()
            return
        if verdict is Verdict.REDRIVE and not self._redrive(message, letter):
            message.requeue()
            return
        log.log(
            logging.INFO if verdict in (Verdict.DONE, Verdict.REDRIVE) else logging.WARNING,
            "dead letter %s (job %s, %s from %s): %s",
            letter.task_id,
            job_id,
            letter.reason,
            letter.queue or "?",
            verdict.value,
            extra={"job_id": job_id},
        )
        self.settled[verdict.value] = self.settled.get(verdict.value, 0) + 1
        message.ack()

    def _redrive(self, message: Message, letter: DeadLetter) -> bool:
        try:
            self.producer.publish(
                message.body,
                exchange=EXCHANGE,
                routing_key=letter.home_queue,
                headers=redrive_headers(message.headers or {}),
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                priority=message.properties.get("priority"),
                retry=True,
                retry_policy={"max_retries": 10, "interval_start": 0.5, "interval_max": 3},
            )
        except Exception as exc:
            log.warning(
                "dead letter %s: redrive failed, handed back: %s",
                letter.task_id,
                exc,
                extra={"job_id": letter.job_id},
            )
            return False
        return True

    def _settle(self, letter: DeadLetter) -> tuple[Verdict, str | None]:
        def once() -> tuple[Verdict, str | None]:
            with session_scope(self.db_url) as session:
                return settle(
                    session,
                    letter,
                    inline_limit=self.settings.inline_inputs_bytes,
                    lease_seconds=self.settings.lease_seconds,
                )

        return with_backoff(
            once, errors=DatabaseUnavailable, seconds=self.db_retry_seconds, first=0.2, most=5.0
        )

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="pipeq-dead-letters", daemon=True)
        thread.start()
        return thread

    def run_forever(self) -> None:
        """``run()``, started again after anything that escapes it, until stopped."""
        while not self.should_stop:
            try:
                self.run()
            except Exception:
                log.exception("dead-letter consumer failed; restarting it")
                time.sleep(1.0)

    def stop(self) -> None:
        self.should_stop = True

    def drain(self, *, idle_seconds: float = 1.0) -> dict[str, int]:
        """Settle every dead letter there is, then return the counts by verdict."""
        try:
            for _ in self.consume(timeout=idle_seconds, safety_interval=min(idle_seconds, 1.0)):
                pass
        except TimeoutError:
            pass
        return dict(self.settled)
