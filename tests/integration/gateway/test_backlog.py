"""The gateway's view of the backlog on /metrics: unfinished jobs by task and state."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.settings import Settings
from tests.integration.gateway.helpers import PARKED, submit


def parked_in_db(settings: Settings) -> int:
    with session_scope(settings.resolved_database_url) as session:
        statement = select(func.count()).where(Job.task == "fine-tune", Job.state == "QUEUED")
        return int(session.scalar(statement) or 0)


def scraped(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_queued_jobs_and_the_oldest_wait_are_scraped(
    api: httpx.Client, anonymous: httpx.Client, settings: Settings
) -> None:
    """No worker serves `train` in this session: fine-tune jobs stay QUEUED."""
    submit(api, PARKED)
    time.sleep(0.5)
    submit(api, PARKED)
    expected = parked_in_db(settings)
    assert expected >= 2
    deadline = time.monotonic() + 10  # the gateway reads the table at most every 2 s
    while True:
        text = anonymous.get("/metrics").text
        queued = scraped(text, "pipeq_jobs", task="fine-tune", state="QUEUED")
        if queued == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert queued == expected
    assert scraped(text, "pipeq_jobs_backlog_up") == 1.0
    oldest = scraped(text, "pipeq_jobs_oldest_queued_seconds", task="fine-tune")
    assert oldest is not None and oldest >= 0.5
    # finished jobs are not in it: the workers count those
    states = {
        sample.labels["state"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pipeq_jobs"
    }
    assert states <= {"QUEUED", "RUNNING"}
