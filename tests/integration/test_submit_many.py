"""Client.submit_many against the real broker, database and worker: many jobs in one call."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.client import Client
from shared.errors import BrokerUnavailable, InvalidJob, JobNotFound
from shared.settings import Settings
from tests.helpers import WorkerProcess
from tests.proxy import Proxy

TASK, MODEL = "text-classification", "tiny-text-classification"


def _jobs(n: int, tag: str) -> list[dict[str, object]]:
    return [
        {"id": str(uuid.uuid4()), "task": TASK, "model": MODEL, "inputs": f"{tag} text {i}"}
        for i in range(n)
    ]


def test_many_jobs_in_one_call_all_run_once_with_the_answer_of_one_job(
    worker: WorkerProcess, client: Client
) -> None:
    jobs = _jobs(60, "bulk")
    views = client.submit_many(jobs)
    assert [view.id for view in views] == [job["id"] for job in jobs]
    assert {view.state for view in views} == {"QUEUED"}
    alone = client.wait(client.submit(TASK, MODEL, "bulk text 7").id, timeout=60)
    done = [client.wait(view.id, timeout=120) for view in views]
    assert {job.state for job in done} == {"SUCCEEDED"}, [j.error for j in done if j.error]
    assert all(job.attempts == 1 for job in done)
    (got,), (want,) = done[7].result, alone.result  # same text, same answer
    assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_one_bad_job_refuses_the_whole_call_and_names_it(client: Client) -> None:
    jobs = _jobs(3, "refused")
    jobs[1]["task"] = "text-telepathy"
    with pytest.raises(InvalidJob, match=r"job 1: unknown task 'text-telepathy'"):
        client.submit_many(jobs)
    for job in jobs:
        with pytest.raises(JobNotFound):
            client.get(str(job["id"]))


def test_jobs_with_an_idempotency_key_are_not_submitted_twice(
    worker: WorkerProcess, client: Client
) -> None:
    key = f"bulk-{uuid.uuid4()}"
    keyed = {"task": TASK, "model": MODEL, "inputs": "keyed", "idempotency_key": key}
    first = client.submit_many([keyed, *_jobs(2, "keyed")])
    again = client.submit_many([keyed])
    assert again[0].id == first[0].id
    assert client.wait(first[0].id, timeout=60).state == "SUCCEEDED"


def test_with_the_broker_away_every_job_of_the_call_fails_not_queued(
    settings: Settings, tmp_path: Path
) -> None:
    away = settings.model_copy(
        update={"broker_url": "amqp://guest:guest@127.0.0.1:1//", "publish_retry_seconds": 1.0}
    )
    client = Client(away)
    jobs = _jobs(5, "no broker")
    with pytest.raises(BrokerUnavailable):
        client.submit_many(jobs)
    rows = [client.get(str(job["id"])) for job in jobs]
    assert {row.state for row in rows} == {"FAILED"}
    assert all(row.error and "not queued" in row.error.message for row in rows)


def test_calls_share_a_broker_connection_and_a_broken_one_is_replaced(
    settings: Settings,
) -> None:
    proxy = Proxy.for_url(settings.broker_url).start()
    try:
        client = Client(
            settings.model_copy(
                update={"broker_url": proxy.url(settings.broker_url), "publish_retry_seconds": 1.0}
            )
        )
        for round_ in range(3):
            client.submit_many(_jobs(2, f"shared {round_}"))
        assert proxy.connections == 1  # one connection for the three calls
        proxy.cut()  # the pooled connection breaks under the client
        with pytest.raises(BrokerUnavailable):
            client.submit_many(_jobs(2, "cut"))
        proxy.restore()
        views = client.submit_many(_jobs(2, "restored"))
        assert {client.get(view.id).state for view in views} <= {"QUEUED", "RUNNING", "SUCCEEDED"}
        assert proxy.connections == 2  # the broken connection was replaced by a new one
    finally:
        proxy.close()
