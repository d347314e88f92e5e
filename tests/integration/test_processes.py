"""``pipeq worker --processes N``: N real worker processes under one command, on real
RabbitMQ and PostgreSQL; jobs shared between them, a dead one started again, a refused
configuration stopping them all, and no child left behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from services.worker import affinity
from services.worker.processes import threads_each
from shared.client import Client
from shared.db.engine import session_scope
from shared.settings import Settings
from tests.helpers import WorkerProcess, service_env
from tests.infra import isolated_services

#: Two processes, named apart from the module's pair (a name is one pidbox queue per vhost).
TWO = ["--processes", "2", "--name", "other@test"]
STARTED = re.compile(r"process (\d) started \(pid (\d+)\)")


def _pids(worker: WorkerProcess) -> dict[int, int]:
    """Each child's latest pid, from the parent's lines."""
    return {int(number): int(pid) for number, pid in STARTED.findall(worker.log())}


def _wait_until(predicate: object, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@dataclass
class Private:
    """A database and vhost of this module's own: the session's shared worker serves nlp too,
    and would take some of the jobs meant for the pair."""

    env: dict[str, str]
    client: Client
    settings: Settings


@pytest.fixture(scope="module")
def private(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    folder = tmp_path_factory.mktemp("processes")
    with isolated_services() as services:
        env = service_env(
            services.broker_url, services.database_url, models=tiny_registry, home=folder
        )
        settings = Settings(
            broker_url=services.broker_url,
            database_url=services.database_url,
            models=tiny_registry,
            home=folder,
        )
        yield Private(env, Client(settings), settings)


@pytest.fixture(scope="module")
def pair(private: Private, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("processes") / "worker.log"
    with _started(private.env, log, ["--processes", "2"]) as worker:
        _wait_until(lambda: worker.log().count(" ready.") == 2)
        yield worker


def test_two_processes_share_the_queue(pair: WorkerProcess, private: Private) -> None:
    client = private.client
    jobs = client.submit_many(
        [
            {"task": "text-classification", "model": "tiny-text-classification", "inputs": f"t {i}"}
            for i in range(60)
        ]
    )
    for job in jobs:
        assert client.wait(job.id, timeout=120).state == "SUCCEEDED"
    with session_scope(private.settings.resolved_database_url) as session:
        workers = set(
            session.execute(
                text("SELECT DISTINCT worker FROM jobs WHERE id = ANY(:ids)"),
                {"ids": [job.id for job in jobs]},
            ).scalars()
        )
    host = socket.gethostname()
    assert workers <= {f"nlp-cpu-1@{host}", f"nlp-cpu-2@{host}"}
    assert len(workers) == 2, f"one process ran every job: {workers}"
    log = pair.log()
    threads = threads_each(2)
    for number in (1, 2):
        assert f"[{number}] INFO    services.worker.main: worker nlp-cpu-{number}@{host}" in log
    assert log.count(f"; {threads} torch threads") == 2
    # Each keeps its threads on cores of its own (affinity.py), where the host has enough.
    shares = affinity.group_shares(2)
    for number, pid in _pids(pair).items():
        own = set(shares[number - 1]) if shares else os.sched_getaffinity(0)
        assert os.sched_getaffinity(pid) == own


def test_a_process_that_dies_is_started_again(pair: WorkerProcess, private: Private) -> None:
    client = private.client
    before = _pids(pair)
    ready = pair.log().count(" ready.")
    os.kill(before[1], signal.SIGKILL)
    _wait_until(lambda: _pids(pair)[1] != before[1])
    assert "process 1 exited with code 137; starting it again in 1 s" in pair.log()
    _wait_until(lambda: pair.log().count(" ready.") == ready + 1)
    assert _pids(pair)[2] == before[2], "the other process was restarted too"
    job = client.submit("text-classification", "tiny-text-classification", "after a restart")
    assert client.wait(job.id, timeout=60).state == "SUCCEEDED"


@contextlib.contextmanager
def _started(env: dict[str, str], log: Path, extra: list[str]) -> Iterator[WorkerProcess]:
    """``pipeq worker`` with ``extra``, stopped at the end whatever the test did; any child a
    failed test left running is killed, so that none serves a vhost about to be deleted."""
    worker = WorkerProcess(queues=["nlp"], env=env, log=log, extra=extra)
    worker.start(wait=False)
    try:
        yield worker
    finally:
        worker.stop(timeout=30)
        for pid in _pids(worker).values():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_every_process_and_the_command(private: Private, tmp_path: Path) -> None:
    with _started(private.env, tmp_path / "w.log", TWO) as worker:
        _wait_until(lambda: worker.log().count(" ready.") == 2)
        children = list(_pids(worker).values())
        assert worker.stop(timeout=60) == 0
        assert all(_gone(pid) for pid in children)
        assert worker.log().count("exited with code 0") == 2


def test_a_killed_command_takes_its_processes_with_it(private: Private, tmp_path: Path) -> None:
    with _started(private.env, tmp_path / "w.log", TWO) as worker:
        _wait_until(lambda: len(_pids(worker)) == 2)
        children = list(_pids(worker).values())
        args = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
        group = Path(args[args.index(b"--group-file") + 1].decode())
        worker.kill()  # SIGKILL: the parent cannot pass anything on
        _wait_until(lambda: all(_gone(pid) for pid in children), timeout=60)
        group.unlink()  # the one thing a killed command leaves: its 16 bytes in /dev/shm


def test_a_configuration_refused_stops_them_all(private: Private, tmp_path: Path) -> None:
    env = {**private.env, "PIPEQ_MODELS": str(tmp_path / "no-such-registry.toml")}
    with _started(env, tmp_path / "w.log", ["-p", "2", "--name", "refused@test"]) as worker:
        assert worker.process is not None
        assert worker.process.wait(timeout=120) == 2
        log = worker.log()
        assert "no-such-registry.toml" in log
        assert "(a configuration it refuses: a restart would fail the same way)" in log
        assert "starting it again" not in log
