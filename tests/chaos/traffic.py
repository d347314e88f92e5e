"""What the chaos run submits, and the producer that submits it as a careful service would.

The plan mixes, deterministically from a seed: jobs for every task the tiny
models serve (mostly nlp text classification), slow jobs that are still
running when a worker is killed, jobs that must fail (an unknown model, on
each queue), jobs cancelled right after submit, jobs published by a foreign
producer with pika (the worker creates their rows), and one poison job whose
input kills its worker. Each job carries what it should end as.

The producer retries a submit that met a transient fault (database or broker
away) with the same idempotency key, which is what keys are for; a foreign
publish is retried until RabbitMQ confirms it. A job counts as *accepted* once
``submit`` returned it or the broker confirmed it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pika

from services.worker.tiny import alias
from shared.client import Client
from shared.errors import PipeqError, TransientError
from shared.messages import celery_body
from shared.queues import ROUTES, WORK_QUEUES

TEXTS = [
    "I love this movie",
    "the food was awful",
    "an average day, nothing more",
    "best purchase I made this year",
]


@dataclass(frozen=True)
class Planned:
    index: int
    task: str
    model: str
    inputs: Any
    expect: frozenset[str]
    kind: str


def plan(count: int, samples: dict[str, list[Any]], *, seed: int) -> list[Planned]:
    rng = random.Random(seed)
    served = {task: inputs for task, inputs in samples.items() if inputs}
    unserved_queues = [q for q in WORK_QUEUES if q not in {ROUTES[t] for t in served}]
    poison_at = count // 4
    jobs = []
    for index in range(count):
        roll = rng.random()
        task, model, inputs = "text-classification", alias("text-classification"), None
        expect, kind = frozenset({"SUCCEEDED"}), "ok"
        if index == poison_at:
            inputs, expect, kind = "fault:exit", frozenset({"FAILED"}), "poison"
        elif roll < 0.12:  # long enough to be running when a worker is killed
            inputs, kind = [f"fault:wait={rng.uniform(1, 2):.2f}", rng.choice(TEXTS)], "slow"
        elif roll < 0.15:
            model, expect, kind = "no-such-model", frozenset({"FAILED"}), "bad"
            inputs = rng.choice(TEXTS)
        elif roll < 0.17:
            inputs, expect, kind = "fault:wait=5", frozenset({"CANCELLED"}), "cancel"
        elif roll < 0.21:
            inputs, kind = rng.choice(TEXTS), "foreign"
        elif roll < 0.31:
            task = rng.choice(sorted(served))
            model, inputs = alias(task), rng.choice(served[task])
            kind = "other-task"
            if unserved_queues and rng.random() < 0.3:  # exercise queues no tiny model serves
                queue = rng.choice(unserved_queues)
                task = next(t for t, q in ROUTES.items() if q == queue)
                model, inputs = alias(task), {"base64": "AAAA"}
                expect, kind = frozenset({"FAILED"}), f"{queue}-unserved"
        else:
            size = rng.choice([1, 1, 1, 4, 16])
            inputs = rng.choice(TEXTS) if size == 1 else rng.choices(TEXTS, k=size)
        jobs.append(Planned(index, task, model, inputs, expect, kind))
    return jobs


@dataclass
class Producer:
    client: Client
    broker_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    accepted: dict[str, Planned] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    retries: int = 0
    progress: int = 0
    _channel: Any = None

    def run(self, jobs: list[Planned], *, rate: float, stop: threading.Event) -> None:
        began = time.monotonic()
        for job in jobs:
            if stop.is_set():
                return
            delay = began + job.index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                job_id = self.publish(job) if job.kind == "foreign" else self.submit(job)
            except PipeqError as exc:
                self.refused[job.index] = f"{type(exc).__name__}: {exc}"
            else:
                self.accepted[job_id] = job
                if job.kind == "cancel":
                    self._retrying(lambda job_id=job_id: self.client.cancel(job_id))
            self.progress = job.index + 1

    def submit(self, job: Planned) -> str:
        key = f"chaos-{self.run_id}-{job.index}"
        view = self._retrying(
            lambda: self.client.submit(job.task, job.model, job.inputs, idempotency_key=key)
        )
        return str(view.id)

    def _retrying(self, call: Any, *, patience: float = 300) -> Any:
        deadline = time.monotonic() + patience
        while True:
            try:
                return call()
            except TransientError:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def publish(self, job: Planned) -> str:
        """As a foreign producer: pika, publisher confirms, no pipeq code, no database."""
        job_id = str(uuid.uuid4())
        body = celery_body(
            {"id": job_id, "task": job.task, "model": job.model, "inputs": job.inputs}
        )
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            headers={"task": "pipeq.run_job", "id": job_id},
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                if self._channel is None or self._channel.is_closed:
                    connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
                    self._channel = connection.channel()
                    self._channel.confirm_delivery()
                self._channel.basic_publish("pipeq", ROUTES[job.task], body, properties)
                return job_id
            except pika.exceptions.AMQPError:
                self.retries += 1
                self._channel = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
