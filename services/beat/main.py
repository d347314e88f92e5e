"""Starting beat: logging, the beat lock, signals, and the tick loop.

``pipeq beat`` takes the lock of its database (:mod:`services.beat.lock`);
without ``--no-wait`` a second beat stands by until the lock is free. Once
active it ticks until SIGTERM or SIGINT; if it loses the lock (its database
session ended), it exits with status 3 so that its supervisor restarts it as a
standby. A tick that meets a transient error (database or broker away) is
logged and tried again at the next one; a run that was due stays due.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from services.beat.lock import BeatLock, lock_for
from services.beat.loop import Beat
from shared.errors import BrokerUnavailable, TransientError
from shared.logs import configure_logging
from shared.settings import Settings, get_settings, redact_url

log = logging.getLogger(__name__)

LOCK_TAKEN_ELSEWHERE = 1
LOCK_LOST = 3


def run(
    settings: Settings | None = None,
    *,
    wait: bool = True,
    once: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Run beat until stopped; returns the process exit code."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    _check_broker(settings)
    stop = stop or _stop_on_signals()
    lock = lock_for(settings.resolved_database_url)
    try:
        if not _take(lock, wait=wait, stop=stop, poll=settings.beat_poll_interval.total_seconds()):
            return 0 if stop.is_set() else LOCK_TAKEN_ELSEWHERE
        log.info(
            "beat active (%s) on %s, broker %s",
            lock.describe(),
            redact_url(settings.resolved_database_url),
            redact_url(settings.resolved_broker_url),
        )
        return _loop(Beat(settings), lock, stop=stop, once=once)
    finally:
        lock.release()


def _check_broker(settings: Settings) -> None:
    """A broker that refuses beat's login stops it (BrokerRefused: exit 2), as it stops a
    worker, rather than every scheduled run failing "not queued"; one that is away is only
    logged, since each run retries it."""
    if settings.embedded_broker:
        return
    from shared.celery_app import make_app, reached

    try:
        with reached(make_app(settings), "connecting to the broker"):
            pass
    except BrokerUnavailable as exc:
        log.warning("%s; each run will try again", exc)


def _take(lock: BeatLock, *, wait: bool, stop: threading.Event, poll: float) -> bool:
    if lock.acquire():
        return True
    if not wait:
        log.error("another pipeq beat is active (%s holds it); exiting", lock.describe())
        return False
    log.info("another pipeq beat is active (%s); standing by", lock.describe())
    while not stop.wait(max(poll, 1.0)):
        if lock.acquire():
            log.info("the other beat is gone; taking over")
            return True
    return False


def _loop(beat: Beat, lock: BeatLock, *, stop: threading.Event, once: bool) -> int:
    poll = beat.settings.beat_poll_interval.total_seconds()
    while not stop.is_set():
        if not lock.held():
            log.error("beat lost its lock (%s); exiting", lock.describe())
            return LOCK_LOST
        try:
            sleep = beat.tick().sleep
        except TransientError as exc:
            if once:
                log.error("beat tick failed: %s", exc)
                return 1
            log.warning("beat tick failed, trying again: %s", exc)
            sleep = poll
        if once:
            return 0
        stop.wait(sleep)
    log.info("beat stopped")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping after this tick", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
