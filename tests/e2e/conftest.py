"""The e2e tier: the ``pipeq`` CLI in fresh processes, on the embedded default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess, pipeq


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> dict[str, str]:
    """A user's shell: no servers, only PIPEQ_HOME and the tiny registry."""
    home = tmp_path_factory.mktemp("e2e-home")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env.update(PIPEQ_HOME=str(home), PIPEQ_MODELS=str(tiny_registry), HF_HUB_OFFLINE="1")
    pipeq("db", "upgrade", env=env)
    return env


@pytest.fixture(scope="module")
def embedded_worker(cli_env: dict[str, str]) -> Iterator[WorkerProcess]:
    log = Path(cli_env["PIPEQ_HOME"]) / "worker.log"
    worker = WorkerProcess(queues=["nlp", "vision", "audio"], env=cli_env, log=log).start()
    yield worker
    worker.stop()
