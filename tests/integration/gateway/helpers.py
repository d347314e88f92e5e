"""Jobs and waits shared by the gateway tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

#: The gateway's payload limit in these tests (PIPEQ_MAX_MESSAGE_BYTES).
LIMIT = 200_000

#: Runs on the session worker (queue nlp) in milliseconds.
QUICK: dict[str, Any] = {
    "task": "text-classification",
    "model": "tiny-text-classification",
    "inputs": "I love this movie",
}
#: Stays QUEUED: no worker serves the train queue in the integration tier.
PARKED: dict[str, Any] = {"task": "fine-tune", "model": "tiny-text-classification", "inputs": {}}


def submit(client: httpx.Client, job: dict[str, Any], **headers: str) -> httpx.Response:
    response = client.post("/v1/jobs", json=job, headers=headers)
    assert response.status_code in (200, 202), response.text
    return response


def wait_terminal(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
