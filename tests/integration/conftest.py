"""The integration tier: one migrated database, one vhost and one shared worker per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.client import Client
from shared.settings import Settings
from tests.helpers import WorkerProcess, pipeq
from tests.infra import Infra, infra, isolated_services

__all__ = ["infra"]


@pytest.fixture(scope="session")
def pipeq_env(
    infra: Infra, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of every pipeq process in this session (workers, CLI)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env.update(
        PIPEQ_BROKER_URL=infra.broker_url,
        PIPEQ_DATABASE_URL=infra.database_url,
        PIPEQ_MODELS=str(tiny_registry),
        PIPEQ_HOME=str(tmp_path_factory.mktemp("pipeq-home")),
        HF_HUB_OFFLINE="1",
    )
    pipeq("db", "upgrade", env=env)
    return env


@pytest.fixture(scope="session")
def settings(pipeq_env: dict[str, str]) -> Settings:
    return Settings(
        broker_url=pipeq_env["PIPEQ_BROKER_URL"],
        database_url=pipeq_env["PIPEQ_DATABASE_URL"],
        models=Path(pipeq_env["PIPEQ_MODELS"]),
        home=Path(pipeq_env["PIPEQ_HOME"]),
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> Client:
    return Client(settings)


@pytest.fixture(scope="session")
def worker(
    pipeq_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """The session's shared worker, serving the inference queues."""
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    process = WorkerProcess(queues=["nlp", "vision", "audio"], env=pipeq_env, log=log).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def own_vhost() -> Iterator[str]:
    """A broker URL on a RabbitMQ vhost of the test module's own (empty: no queue declared,
    no worker), dropped afterwards; skipped where rabbitmqctl cannot make one."""
    with isolated_services() as services:
        if services.broker_url.rstrip("/").endswith(":5672"):
            pytest.skip("no vhost of our own (rabbitmqctl is not on this machine)")
        yield services.broker_url
