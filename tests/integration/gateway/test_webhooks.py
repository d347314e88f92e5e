"""Webhooks: a finished job POSTed to a local receiver, signed, retried after a failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared import signatures
from tests.helpers import WorkerProcess
from tests.integration.gateway.helpers import PARKED, QUICK, submit
from tests.integration.test_readme import readme_block


@dataclass
class Receiver:
    """A local HTTP server that answers with ``statuses`` in turn (then 200) and keeps what came."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    url: str = ""

    def wait(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"{len(self.received)} of {count} deliveries came"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 200
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/pipeq"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _readme_verify() -> Any:
    """The README's verification function for receivers, as written there."""
    namespace: dict[str, Any] = {}
    exec(readme_block("webhook-verify"), namespace)
    return namespace["verify_pipeq_signature"]


def test_a_finished_job_is_delivered_signed_after_a_failed_attempt(
    api: httpx.Client, acme: dict[str, str], receiver: Receiver, worker: WorkerProcess
) -> None:
    receiver.statuses = [500]
    job_id = submit(api, {**QUICK, "callback_url": receiver.url}).json()["id"]
    receiver.wait(2)
    verify = _readme_verify()
    (first, body1, status1), (second, body2, status2) = receiver.received[:2]
    assert (status1, status2) == (500, 200)
    for headers, body in ((first, body1), (second, body2)):
        assert headers["content-type"] == "application/json"
        assert headers["pipeq-event"] == "job.succeeded"
        assert verify(acme["webhook_secret"], headers["pipeq-signature"], body)
        assert signatures.verify(acme["webhook_secret"], headers["pipeq-signature"], body)
        assert not verify("whsec_wrong", headers["pipeq-signature"], body)
        assert not verify(acme["webhook_secret"], headers["pipeq-signature"], body + b" ")
    assert (first["pipeq-delivery"], second["pipeq-delivery"]) == (f"{job_id}/1", f"{job_id}/2")
    job = json.loads(body2)
    assert job["id"] == job_id and job["state"] == "SUCCEEDED" and job["result"]

    deadline = time.monotonic() + 10
    while (hook := api.get(f"/v1/jobs/{job_id}/webhook").json())["state"] == "PENDING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert hook["state"] == "DELIVERED" and hook["attempts"] == 2 and hook["delivered_at"]
    assert [d["status_code"] for d in hook["deliveries"]] == [500, 200]
    assert hook["deliveries"][0]["error"] == "HTTP 500" and hook["deliveries"][1]["error"] is None
    time.sleep(0.5)  # several polls: a delivered webhook is not sent again
    assert len(receiver.received) == 2


def test_no_webhook_until_the_job_ends_and_one_when_cancelled(
    api: httpx.Client, receiver: Receiver
) -> None:
    job_id = submit(api, {**PARKED, "callback_url": receiver.url}).json()["id"]
    time.sleep(0.5)  # several polls while the job is queued
    assert receiver.received == []
    assert api.get(f"/v1/jobs/{job_id}/webhook").json()["state"] == "PENDING"
    api.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    receiver.wait(1)
    headers, body, _ = receiver.received[0]
    assert headers["pipeq-event"] == "job.cancelled"
    assert json.loads(body)["state"] == "CANCELLED"


def test_a_job_without_a_callback_has_no_webhook(api: httpx.Client) -> None:
    job_id = submit(api, PARKED).json()["id"]
    missing = api.get(f"/v1/jobs/{job_id}/webhook")
    assert missing.status_code == 404 and "no webhook" in missing.json()["error"]["message"]
