"""``GET /v1/jobs/{id}/events``: server-sent events of a job's state and progress until it ends."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from shared import states
from shared.db.engine import session_scope
from tests.helpers import WorkerProcess
from tests.integration.gateway.helpers import PARKED, QUICK, submit


def read_events(
    client: httpx.Client, url: str, *, into: list[tuple[str, Any]] | None = None
) -> list[tuple[str, Any]]:
    """Every (event, data) of a stream, as they come, until the server closes it."""
    found: list[tuple[str, Any]] = [] if into is None else into
    event, data = "message", []
    with client.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and data:
                found.append((event, json.loads("\n".join(data))))
                event, data = "message", []
    return found


def test_events_follow_a_job_to_its_end(api: httpx.Client, worker: WorkerProcess) -> None:
    submitted = submit(api, QUICK).json()
    started = time.monotonic()
    events = read_events(api, submitted["events_url"])
    assert time.monotonic() - started < 60  # the server ended the stream
    names = [name for name, _ in events]
    assert set(names) <= {"state", "progress"}
    last_name, last = events[-1]
    assert last_name == "state" and last["state"] == "SUCCEEDED" and last["result"]
    seen = [data["state"] for name, data in events if name == "state"]
    assert seen == sorted(set(seen), key=["QUEUED", "RUNNING", "SUCCEEDED"].index)


def test_events_carry_progress_and_end_on_cancel(api: httpx.Client, settings: Any) -> None:
    """A parked job driven by hand through the state machine, as a worker would drive it."""
    job_id = submit(api, PARKED).json()["id"]
    events: list[tuple[str, Any]] = []
    url = f"/v1/jobs/{job_id}/events"
    reader = threading.Thread(target=read_events, args=(api, url), kwargs={"into": events})
    reader.start()
    database = settings.resolved_database_url

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(events) >= count, events

    def step(change: Any) -> None:
        with session_scope(database) as session:
            change(session)

    # Each change waits until the stream has shown the one before, so none merge.
    wait_for(1)
    step(lambda session: states.start(session, job_id, worker="test-hand"))
    wait_for(2)
    step(lambda session: states.heartbeat(session, job_id, progress={"step": 1, "of": 2}))
    wait_for(3)
    step(lambda session: states.heartbeat(session, job_id, progress={"step": 2, "of": 2}))
    wait_for(4)
    api.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()  # running: asks the worker
    step(lambda session: states.finish_cancelled(session, job_id))
    reader.join(timeout=30)
    assert not reader.is_alive()
    summary = [
        (name, data["state"], (data.get("progress") or {}).get("step")) for name, data in events
    ]
    assert summary == [
        ("state", "QUEUED", None),
        ("state", "RUNNING", None),
        ("progress", "RUNNING", 1),
        ("progress", "RUNNING", 2),
        ("state", "CANCELLED", 2),
    ]
