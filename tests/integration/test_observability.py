"""What an operator sees of a real worker: Prometheus metrics, JSON logs, Celery events.

One worker of this module's own (its database and vhost, so no other worker takes
its jobs) runs as deployed: JSON logs, metrics on a port, task events on. It has a
memory budget of one byte and one thread, so each model loads inside the job that
first needs it (a log line the runner did not write, in the job's thread) and
evicts the one before. A fixed sequence of jobs runs once; the tests read what it
left: the worker's ``/metrics`` over HTTP, its log file, and the events an event
receiver (what Flower runs) caught meanwhile.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.celery_app import make_app
from shared.client import Client
from shared.jobs import TASK_NAME
from shared.settings import Settings
from tests.helpers import WorkerProcess, service_env
from tests.infra import isolated_services

TC, TC_MODEL = "text-classification", "tiny-text-classification"
FM, FM_MODEL = "fill-mask", "tiny-fill-mask"
WORKER_NAME = "observed@pipeq-tests"
BUDGET_OF_ONE_BYTE = ["--concurrency", "1", "--memory-budget", "1"]


@dataclass
class Run:
    worker: WorkerProcess
    port: int
    succeeded_tc: list[str]
    succeeded_fm: str
    unknown_model: str
    invalid: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        return [*self.succeeded_tc, self.succeeded_fm, self.unknown_model, self.invalid]

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            return response.read().decode()

    def log_entries(self) -> list[dict[str, Any] | str]:
        entries: list[dict[str, Any] | str] = []
        for line in self.worker.log().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append(line)
        return entries


class EventLog:
    """A Celery event receiver in a thread, as Flower runs one."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_app(settings)
        self.events: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        """One consumer for the whole run, as Flower's: the event queue is auto-delete, so
        a receiver that stopped and started again between events would lose those sent in
        the gap. ``should_stop`` is read about once a second."""
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})

            def stop_when_asked() -> None:
                self.stop.wait()
                receiver.should_stop = True

            threading.Thread(target=stop_when_asked, daemon=True).start()
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def wait_for(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            time.sleep(0.1)
        kinds = sorted({event["type"] for event in self.events})
        raise AssertionError(f"no such event within {timeout} s; saw {kinds}")


@pytest.fixture(scope="module")
def run(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("observed")
    with isolated_services() as services:
        env = service_env(
            services.broker_url,
            services.database_url,
            models=tiny_registry,
            home=folder / "home",
            PIPEQ_LOG_JSON="true",
            PIPEQ_TASK_EVENTS="true",  # as deployed (compose, k8s)
        )
        settings = Settings(
            broker_url=services.broker_url,
            database_url=services.database_url,
            models=tiny_registry,
            home=folder / "home",
            task_events=True,
        )
        events = EventLog(settings)
        events.thread.start()
        worker = WorkerProcess(
            queues=["nlp"],
            env=env,
            log=folder / "worker.log",
            extra=[*BUDGET_OF_ONE_BYTE, "--metrics-port", "0", "--name", WORKER_NAME],
        ).start(timeout=180)
        try:
            port = int(re.search(r"metrics on http://[^:]+:(\d+)/metrics", worker.log()).group(1))  # type: ignore[union-attr]
            # the receiver is live once it has heard the worker
            events.wait_for(lambda e: e["type"].startswith("worker-"), timeout=60)
            yield _jobs(Client(settings), worker, port, events)
        finally:
            worker.stop()
            events.stop.set()
            events.thread.join(timeout=10)


def _jobs(client: Client, worker: WorkerProcess, port: int, events: EventLog) -> Run:
    succeeded = []
    for text in ("a fine day", "a grey day", "a long day"):
        job = client.submit(TC, TC_MODEL, text)
        assert client.wait(job.id, timeout=90).state == "SUCCEEDED"
        succeeded.append(job.id)
    fill = client.submit(FM, FM_MODEL, "a [MASK] day")  # evicts the classifier (budget: 1 byte)
    assert client.wait(fill.id, timeout=90).state == "SUCCEEDED"
    # a foreign producer's jobs: no row before the worker's, so their wait is about 0
    unknown = str(uuid.uuid4())
    client.publish_message({"id": unknown, "task": TC, "model": "no-such-model", "inputs": "x"})
    invalid = str(uuid.uuid4())
    client.app.send_task(TASK_NAME, args=[{"task": TC}], task_id=invalid, queue="nlp")
    for job_id in (unknown, invalid):
        deadline = time.monotonic() + 90
        while True:
            try:
                assert client.wait(job_id, timeout=90).state == "FAILED"
                break
            except Exception:
                assert time.monotonic() < deadline, f"job {job_id} never ended"
                time.sleep(0.2)
    for job_id in [*succeeded, fill.id]:  # sent after the row is written: may trail it
        events.wait_for(lambda e, j=job_id: e["type"] == "task-succeeded" and e["uuid"] == j)
    return Run(worker, port, succeeded, fill.id, unknown, invalid, events.events)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text, or None if absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if found == labels:
            return float(value)
    return None


# -- metrics -----------------------------------------------------------------------------


def test_jobs_are_counted_by_task_and_state(run: Run) -> None:
    text = run.scrape()
    jobs = "pipeq_worker_jobs_total"
    assert sample(text, jobs, task=TC, state="SUCCEEDED") == 3
    assert sample(text, jobs, task=FM, state="SUCCEEDED") == 1
    assert sample(text, jobs, task=TC, state="FAILED") == 1  # the unknown model
    assert sample(text, jobs, task="invalid", state="FAILED") == 1
    assert sample(text, jobs, task=FM, state="FAILED") is None


def test_latencies_are_histograms_per_task(run: Run) -> None:
    text = run.scrape()
    for name in ("end_to_end", "queue_wait", "run"):
        histogram = f"pipeq_worker_job_{name}_seconds"
        assert sample(text, f"{histogram}_count", task=TC) == 4, name
        assert sample(text, f"{histogram}_count", task=FM) == 1, name
        assert sample(text, f"{histogram}_bucket", task=TC, le="+Inf") == 4, name
    total = sample(text, "pipeq_worker_job_end_to_end_seconds_sum", task=TC) or 0.0
    waited = sample(text, "pipeq_worker_job_queue_wait_seconds_sum", task=TC) or 0.0
    ran = sample(text, "pipeq_worker_job_run_seconds_sum", task=TC) or 0.0
    assert total > 0 and ran > 0
    # end to end is queue wait + run (the same clock reads, to the microsecond)
    assert total == pytest.approx(waited + ran, abs=1e-3)


def test_batch_sizes_model_loads_and_memory(run: Run) -> None:
    text = run.scrape()
    assert sample(text, "pipeq_worker_batch_size_count", model=TC_MODEL) == 3
    assert sample(text, "pipeq_worker_batch_size_count", model=FM_MODEL) == 1
    assert sample(text, "pipeq_worker_batch_size_bucket", model=TC_MODEL, le="1.0") == 3
    assert sample(text, "pipeq_worker_batch_size_sum", model=TC_MODEL) == 3
    for model in (TC_MODEL, FM_MODEL):
        assert sample(text, "pipeq_worker_model_loads_total", model=model) == 1
        seconds = sample(text, "pipeq_worker_model_load_seconds", model=model)
        assert seconds is not None and 0 < seconds < 60
    # the budget (1 byte) evicted the classifier when fill-mask loaded: its memory series went
    assert sample(text, "pipeq_worker_model_bytes", model=TC_MODEL) is None
    loaded = sample(text, "pipeq_worker_model_bytes", model=FM_MODEL)
    assert loaded is not None and loaded > 10_000
    assert sample(text, "pipeq_worker_info", worker=WORKER_NAME, queues="nlp", device="cpu") == 1
    assert (sample(text, "process_resident_memory_bytes") or 0) > 100 * 2**20
    assert "pipeq_worker_gpu_memory" not in text  # no CUDA here


# -- logs --------------------------------------------------------------------------------


def test_every_log_line_is_json_and_names_its_job(run: Run) -> None:
    entries = run.log_entries()
    plain = [entry for entry in entries if isinstance(entry, str) and entry.strip()]
    assert not plain, f"not JSON: {plain[:5]}"
    records = [entry for entry in entries if isinstance(entry, dict)]
    for job_id in run.job_ids:
        about = [r for r in records if job_id in r["message"] or r.get("job_id") == job_id]
        assert about, f"no log line about {job_id}"
        for record in about:
            assert record.get("job_id") == job_id, record
    # One line a job at INFO, pipeq's own: Celery's received/succeeded lines only at DEBUG
    for job_id in run.succeeded_tc:
        mine = [r for r in records if r.get("job_id") == job_id]
        assert not [r for r in mine if r["logger"].startswith("celery")], mine
        assert len([r for r in mine if r["logger"] == "services.worker.runner"]) == 1, mine


def test_a_line_logged_inside_a_job_without_its_id_gets_it(run: Run) -> None:
    """The classifier loads in the first job's thread; the registry's line does not pass job_id."""
    records = [entry for entry in run.log_entries() if isinstance(entry, dict)]
    loads = [r for r in records if r.get("event") == "model_loaded" and r["model"] == TC_MODEL]
    assert [r.get("job_id") for r in loads] == [run.succeeded_tc[0]]
    (evicted,) = [r for r in records if r.get("event") == "model_evicted"]
    assert evicted["job_id"] == run.succeeded_fm
    started = [r for r in records if "ready." in r["message"]]
    assert started and all("job_id" not in r for r in started)


# -- Celery events -------------------------------------------------------------------------


def test_the_worker_and_producer_send_task_events(run: Run) -> None:
    for job_id in [*run.succeeded_tc, run.succeeded_fm]:
        kinds = [e["type"] for e in run.events if e.get("uuid") == job_id]
        assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= set(kinds)
        (received,) = [
            e for e in run.events if e["type"] == "task-received" and e["uuid"] == job_id
        ]
        assert received["hostname"] == WORKER_NAME
        assert received["name"] == TASK_NAME
    # A worker beats every 2 s from its start; the jobs above may take less than that.
    deadline = time.monotonic() + 15
    while not (heartbeats := [e for e in run.events if e["type"] == "worker-heartbeat"]):
        assert time.monotonic() < deadline, "no worker-heartbeat event within 15 s"
        time.sleep(0.1)
    assert {e["hostname"] for e in heartbeats} == {WORKER_NAME}
