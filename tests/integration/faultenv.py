"""A private pipeq for fault tests: its own database and vhost, reached through cuttable proxies.

Workers here run ``python -m tests.faults`` (the real worker with fault-injecting
handlers), with short heartbeats, leases and time limits so that faults play out
in seconds. The database URL, which carries a password, reaches the workers
through ``PIPEQ_DATABASE_URL_FILE``; tests check that it never reaches a log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.client import Client
from shared.jobs import JobView
from shared.settings import Settings
from tests.faults import WORKER_COMMAND
from tests.helpers import WorkerProcess, pipeq
from tests.infra import isolated_services
from tests.proxy import Proxy

SECRET = "fault-s3cret-pw"
MODEL = "tiny-text-classification"
TASK = "text-classification"


@dataclass
class Pool:
    """The fault workers of one test module."""

    env: dict[str, str]
    folder: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def alive(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive]

    def ensure(self, count: int) -> list[WorkerProcess]:
        """Start workers (side by side) until ``count`` are alive."""
        fresh = []
        for _ in range(count - len(self.alive)):
            log = self.folder / f"worker-{len(self.workers)}.log"
            worker = WorkerProcess(
                queues=["nlp"],
                env=self.env,
                log=log,
                extra=["--concurrency", "2", "--name", f"fault{len(self.workers)}@pipeq-tests"],
                command=WORKER_COMMAND,
            )
            self.workers.append(worker.start(wait=False))
            fresh.append(worker)
        for worker in fresh:
            worker.wait_for(r" ready\.", timeout=180)
        return self.alive

    def logs(self) -> str:
        return "\n".join(worker.log_path.read_text(errors="replace") for worker in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=20)
        self.workers = [w for w in self.workers if w.alive]


@dataclass
class FaultEnv:
    env: dict[str, str]
    client: Client
    pool: Pool
    db_proxy: Proxy
    mq_proxy: Proxy
    vhost: str

    def unacked(self) -> int:
        """Messages RabbitMQ has handed out and not had acked, on the nlp queue."""
        tool = shutil.which("rabbitmqctl")
        assert tool, "rabbitmqctl is needed to read queue counters"
        done = subprocess.run(
            [tool, "list_queues", "-p", self.vhost, "name", "messages_unacknowledged",
             "--formatter", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        rows = json.loads(done.stdout)
        return sum(int(row["messages_unacknowledged"]) for row in rows if row["name"] == "nlp")

    def wait_state(self, job_id: str, state: str, timeout: float = 60) -> JobView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(job_id)
            if job.state == state:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} is {self.client.get(job_id).state}, never {state}")


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


@contextlib.contextmanager
def fault_env(registry: Path, folder: Path) -> Iterator[FaultEnv]:
    with isolated_services() as services:
        db_proxy = Proxy.for_url(services.database_url).start()
        mq_proxy = Proxy.for_url(services.broker_url).start()
        url_file = folder / "database-url"
        # Trust authentication ignores the password: it is there to be kept secret.
        url_file.write_text(db_proxy.url(_with_password(services.database_url, SECRET)))
        env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
        env.update(
            PIPEQ_DATABASE_URL_FILE=str(url_file),
            PIPEQ_BROKER_URL=mq_proxy.url(services.broker_url),
            PIPEQ_MODELS=str(registry),
            PIPEQ_HOME=str(folder / "home"),
            PIPEQ_HEARTBEAT_SECONDS="0.5",
            PIPEQ_LEASE_SECONDS="3",
            PIPEQ_TIME_LIMITS='{"nlp": 4}',
            PIPEQ_LOG_LEVEL="INFO",
            HF_HUB_OFFLINE="1",
        )
        pipeq("db", "upgrade", env=env)
        settings = Settings(
            broker_url=mq_proxy.url(services.broker_url),
            database_url=services.database_url,
            models=registry,
            home=folder / "home",
        )
        pool = Pool(env, folder)
        vhost = unquote(urlsplit(services.broker_url).path[1:]) or "/"
        try:
            yield FaultEnv(env, Client(settings), pool, db_proxy, mq_proxy, vhost)
        finally:
            pool.stop()
            db_proxy.close()
            mq_proxy.close()
