"""One chaos run: private servers, a fleet of workers, steady traffic, faults on cue, figures.

::

    start RabbitMQ + PostgreSQL (private) -> migrate, audit trigger -> tiny models -> workers
    producer: the plan at ``rate`` jobs/s     sweeper: requeue_stale_jobs every 10 s (as beat)
    faults, at fractions of the stream: SIGKILL a worker (several times), restart
        RabbitMQ once, restart PostgreSQL once (a crash: ``pg_ctl -m immediate``)
    settle: until every accepted job is terminal (or ``settle_seconds``) -> figures

Everything runs in one scratch folder, kept (with every log) if a target is missed.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from shared.client import Client
from shared.db.engine import session_scope
from shared.settings import Settings
from shared.stale import requeue_stale_jobs
from tests.chaos.fleet import Fleet
from tests.chaos.measure import figures, install_audit
from tests.chaos.servers import PrivatePostgres, PrivateRabbit
from tests.chaos.traffic import Producer, plan
from tests.helpers import pipeq

TARGETS = ("lost", "duplicated", "stuck")


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 1200
    rate: float = 12.0
    kills: tuple[float, ...] = (0.08, 0.2, 0.45, 0.55, 0.8)
    rabbit_restart_at: float = 0.33
    postgres_restart_at: float = 0.66
    settle_seconds: float = 300.0
    seed: int = 7
    keep: bool = False


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(config: ChaosConfig) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pipeq-chaos-"))
    folder.chmod(0o755)
    rabbit, postgres = PrivateRabbit(folder / "rabbitmq"), PrivatePostgres(folder / "postgres")
    fleet: Fleet | None = None
    result: dict[str, Any] = {}
    began = time.monotonic()
    try:
        log(f"scratch folder {folder}; starting a private RabbitMQ and PostgreSQL")
        rabbit.start(wait=False)
        postgres.start()
        rabbit.wait()
        env, settings = _environment(folder, rabbit.url, postgres.url)
        install_audit(create_engine(postgres.url))
        from services.worker.tiny import samples

        groups = [["nlp"], ["nlp"], ["vision", "audio", "train"]]
        fleet = Fleet(env, folder, groups).start()
        log(f"{len(groups)} workers ready in {time.monotonic() - began:.0f} s")
        result = _traffic(config, settings, rabbit, postgres, fleet, samples())
        result["seconds"] = round(time.monotonic() - began, 1)
        return result
    finally:
        if fleet is not None:
            fleet.close()
        rabbit.close()
        postgres.close()
        missed = any(result.get(target, 1) for target in TARGETS)
        if config.keep or missed:
            log(f"kept {folder} (worker logs, server logs)")
            result["folder"] = str(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _environment(folder: Path, broker: str, database: str) -> tuple[dict[str, str], Settings]:
    registry_folder = folder / "tiny"
    from services.worker.tiny import build_all

    registry = build_all(registry_folder)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env.update(
        PIPEQ_BROKER_URL=broker,
        PIPEQ_DATABASE_URL=database,
        PIPEQ_MODELS=str(registry),
        PIPEQ_HOME=str(folder / "home"),
        PIPEQ_HEARTBEAT_SECONDS="1",
        PIPEQ_LEASE_SECONDS="5",
        PIPEQ_DB_RETRY_SECONDS="600",
        PIPEQ_PUBLISH_RETRY_SECONDS="120",
        HF_HUB_OFFLINE="1",
    )
    pipeq("db", "upgrade", env=env)
    settings = Settings(
        broker_url=broker,
        database_url=database,
        models=registry,
        home=folder / "home",
        publish_retry_seconds=120,
    )
    return env, settings


def _traffic(
    config: ChaosConfig,
    settings: Settings,
    rabbit: PrivateRabbit,
    postgres: PrivatePostgres,
    fleet: Fleet,
    samples: dict[str, list[Any]],
) -> dict[str, Any]:
    rng = random.Random(config.seed)
    jobs = plan(config.jobs, samples, seed=config.seed)
    producer = Producer(Client(settings), settings.broker_url)
    stop = threading.Event()
    events: list[str] = []
    timings: dict[str, float] = {}

    def at(fraction: float, name: str, action: Callable[[], object]) -> tuple[int, str, Any]:
        return int(fraction * config.jobs), name, action

    schedule = sorted(
        [
            *(at(f, "kill", lambda: fleet.kill(rng, _running(settings))) for f in config.kills),
            at(config.rabbit_restart_at, "rabbitmq", lambda: timings.setdefault(
                "rabbitmq_restart_seconds", round(rabbit.restart(), 1))),
            at(config.postgres_restart_at, "postgresql", lambda: timings.setdefault(
                "postgresql_restart_seconds", round(postgres.restart(), 1))),
        ],
        key=lambda item: item[0],
    )  # fmt: skip

    def fire(name: str, action: Callable[[], object]) -> None:
        at_job = producer.progress
        outcome = action()
        events.append(f"{name} at job {at_job}: {outcome}")
        log(events[-1])

    def faults() -> None:
        fired = []
        for count, name, action in schedule:  # each in its own thread: a restart takes a while
            while producer.progress < count and not stop.is_set():
                time.sleep(0.05)
            if stop.is_set():
                break
            fired.append(threading.Thread(target=fire, args=(name, action), daemon=True))
            fired[-1].start()
        for thread in fired:
            thread.join(600)

    sweeper = Client(settings)
    requeued: list[str] = []

    def sweep() -> None:
        while not stop.wait(10):
            try:
                with session_scope(settings.resolved_database_url) as session:
                    found = requeue_stale_jobs(
                        session,
                        heartbeat_timeout=timedelta(seconds=60),
                        publish=sweeper.publish_message,
                    )
                requeued.extend(found.requeued + found.failed)
            except Exception as exc:  # the database or broker is away: next round
                log(f"sweep skipped: {type(exc).__name__}")

    threads = [threading.Thread(target=t, daemon=True) for t in (faults, sweep)]
    for thread in threads:
        thread.start()
    log(f"submitting {config.jobs} jobs at {config.rate:g}/s")
    producer.run(jobs, rate=config.rate, stop=stop)
    log(f"submitted {len(producer.accepted)} (retried {producer.retries} transient faults)")
    threads[0].join(600)
    settled_in = _settle(settings, producer, config.settle_seconds)
    stop.set()
    engine = create_engine(settings.resolved_database_url)
    result = figures(engine, producer.accepted)
    engine.dispose()
    result.update(
        timings,
        refused_at_submit=len(producer.refused),
        submit_retries=producer.retries,
        worker_kills=fleet.kills,
        worker_deaths=fleet.deaths,
        worker_restarts=fleet.restarts,
        swept=len(requeued),
        settle_seconds=settled_in,
        dead_letters=fleet.logs().count("dead letter "),
        events=events,
    )
    return result


def _running(settings: Settings) -> dict[str, int]:
    """Jobs running now, by worker name (empty if the database is away)."""
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT worker, count(*) FROM jobs WHERE state = 'RUNNING' GROUP BY worker")
            )
            return {str(worker): int(count) for worker, count in rows}
    except Exception:
        return {}
    finally:
        engine.dispose()


def _settle(settings: Settings, producer: Producer, limit: float) -> float:
    engine = create_engine(settings.resolved_database_url)
    began = time.monotonic()
    ids = list(producer.accepted)
    try:
        while time.monotonic() - began < limit:
            try:
                with engine.connect() as connection:
                    open_ = connection.execute(
                        text(
                            "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND state IN "
                            "('QUEUED', 'RUNNING')"
                        ),
                        {"ids": ids},
                    ).scalar_one()
                    present = connection.execute(
                        text("SELECT count(*) FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}
                    ).scalar_one()
                if open_ == 0 and present == len(ids):
                    break
            except Exception:
                pass
            time.sleep(2)
    finally:
        engine.dispose()
    return round(time.monotonic() - began, 1)
