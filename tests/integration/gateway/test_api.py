"""The gateway's HTTP API against a real gateway process, database, broker and worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.gateway_process import GatewayProcess, create_key
from tests.helpers import WorkerProcess, pipeq
from tests.integration.gateway.helpers import (
    LIMIT,
    PARKED,
    QUICK,
    submit,
    unique,
    wait_terminal,
)


def test_a_job_through_its_whole_life(api: httpx.Client, worker: WorkerProcess) -> None:
    response = api.post("/v1/jobs", json={**QUICK, "params": {"top_k": 2}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "QUEUED" and body["job"]["id"] == body["id"]
    assert response.headers["location"] == body["status_url"]
    assert body["status_url"].endswith(f"/v1/jobs/{body['id']}")
    assert body["events_url"].endswith(f"/v1/jobs/{body['id']}/events")

    job = wait_terminal(api, body["id"])
    assert job["state"] == "SUCCEEDED", job
    assert [sorted(item) for item in job["result"]] == [["label", "score"], ["label", "score"]]
    assert job["attempts"] == 1 and job["worker"] and job["finished_at"]
    assert api.get(body["status_url"]).json() == job

    listed = api.get("/v1/jobs", params={"state": "SUCCEEDED", "task": QUICK["task"]}).json()
    assert body["id"] in [item["id"] for item in listed["jobs"]]
    assert all(item["state"] == "SUCCEEDED" for item in listed["jobs"])


def test_lists_page_by_cursor_newest_first(
    gateway: GatewayProcess, gateway_env: dict[str, str]
) -> None:
    key = create_key(unique("pager"), gateway_env)
    headers = {"Authorization": f"Bearer {key['key']}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        made = [submit(client, PARKED).json()["id"] for _ in range(5)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/jobs", params=params).raise_for_status().json()
            seen += [item["id"] for item in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(made)) and pages == 3
        queued = client.get("/v1/jobs", params={"state": "QUEUED", "limit": 200}).json()
        assert len(queued["jobs"]) == 5
        assert client.get("/v1/jobs", params={"task": "summarization"}).json()["jobs"] == []
        bad = client.get("/v1/jobs", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"]
        bad_state = client.get("/v1/jobs", params={"state": "DONE"})
        assert bad_state.status_code == 422 and bad_state.json()["error"]["fields"][0]["loc"] == [
            "query",
            "state",
        ]
        lower = client.get("/v1/jobs", params={"state": "queued", "limit": 200})
        assert len(lower.json()["jobs"]) == 5  # any case, as the CLI takes it
        typo = client.get("/v1/jobs", params={"task": "sumarization"})  # a 422, not an empty page
        assert typo.status_code == 422, typo.text
        (field,) = typo.json()["error"]["fields"]
        assert (
            field["loc"] == ["query", "task"] and "unknown task 'sumarization'" in field["message"]
        )


def test_cancel_a_queued_job(api: httpx.Client) -> None:
    job_id = submit(api, PARKED).json()["id"]
    cancelled = api.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    assert cancelled.json()["error"]["type"] == "cancelled"
    again = api.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "CANCELLED"


def test_a_tenant_sees_only_its_own_jobs(api: httpx.Client, other: httpx.Client) -> None:
    mine = submit(api, PARKED).json()["id"]
    theirs = submit(other, PARKED).json()["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    for path in ("", "/events", "/webhook"):
        hidden = other.get(f"/v1/jobs/{mine}{path}")
        absent = other.get(f"/v1/jobs/{missing}{path}")
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"]["type"] == absent.json()["error"]["type"] == "not_found"
    assert other.post(f"/v1/jobs/{mine}/cancel").status_code == 404
    assert api.get(f"/v1/jobs/{mine}").json()["state"] == "QUEUED"  # not cancelled by globex
    ids_other = {item["id"] for item in other.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    ids_mine = {item["id"] for item in api.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert theirs in ids_other and mine not in ids_other
    assert mine in ids_mine and theirs not in ids_mine


def test_a_retried_post_returns_the_same_job(api: httpx.Client, other: httpx.Client) -> None:
    key = unique("retry")
    first = submit(api, PARKED, **{"Idempotency-Key": key})
    again = submit(api, PARKED, **{"Idempotency-Key": key})
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["job"]["idempotency_key"] == key  # as given, not as stored
    in_body = submit(api, {**PARKED, "idempotency_key": key})
    assert in_body.json()["id"] == first.json()["id"]
    # The same key from another tenant is another job: tenants cannot collide or probe.
    theirs = submit(other, PARKED, **{"Idempotency-Key": key})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    mismatch = api.post(
        "/v1/jobs", json={**PARKED, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"}
    )
    assert mismatch.status_code == 422
    # The same key with another job is refused, never taken for a replay of the first; the
    # answer names the key as the caller gave it, not as stored under the tenant.
    other_job = api.post(
        "/v1/jobs",
        json={**PARKED, "params": {"learning_rate": 1e-4}},
        headers={"Idempotency-Key": key},
    )
    assert other_job.status_code == 422, other_job.text
    error = other_job.json()["error"]
    assert error["type"] == "invalid_job"
    assert error["message"] == (
        f"idempotency key {key!r} was used for job {first.json()['id']} with another task, "
        "model, inputs or parameters"
    )


def test_requests_without_a_valid_key_are_refused(
    anonymous: httpx.Client, gateway: GatewayProcess, gateway_env: dict[str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eDp5"}):
        refused = anonymous.get("/v1/jobs", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["type"] == "unauthorized"
    forged = "pq_0123456789ab_" + "A" * 43
    assert (
        anonymous.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )
    assert anonymous.post("/v1/jobs", json=QUICK).status_code == 401

    made = create_key(unique("leaver"), gateway_env, cli=True)
    bearer = {"Authorization": f"Bearer {made['key']}"}
    assert anonymous.get("/v1/jobs", headers=bearer).status_code == 200
    wrong_secret = made["key"][:-4] + ("AAAA" if not made["key"].endswith("AAAA") else "BBBB")
    assert (
        anonymous.get("/v1/jobs", headers={"Authorization": f"Bearer {wrong_secret}"}).status_code
        == 401
    )
    assert pipeq("keys", "revoke", made["id"], env=gateway_env).returncode == 0
    assert anonymous.get("/v1/jobs", headers=bearer).status_code == 401
    again = pipeq("keys", "revoke", made["id"], env=gateway_env, check=False)
    assert again.returncode == 1 and "no active key" in again.stderr
    listing = pipeq("keys", "list", made["tenant"], env=gateway_env).stdout
    assert made["id"] in listing and made["key"] not in listing


def test_a_body_past_the_limit_is_413(api: httpx.Client) -> None:
    big = {**QUICK, "inputs": "x" * LIMIT}
    refused = api.post("/v1/jobs", json=big)
    assert refused.status_code == 413
    assert refused.json()["error"]["type"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it streams
        data = json.dumps(big).encode()
        for start in range(0, len(data), 16_384):
            yield data[start : start + 16_384]

    streamed = api.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert api.post("/v1/jobs", json={**QUICK, "inputs": "x" * (LIMIT // 2)}).status_code == 202


def _fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {".".join(map(str, f["loc"])): f["message"] for f in response.json()["error"]["fields"]}


def test_an_invalid_job_is_422_with_its_fields(api: httpx.Client) -> None:
    before = len(api.get("/v1/jobs", params={"limit": 200}).json()["jobs"])
    fields = _fields(api.post("/v1/jobs", json={**QUICK, "params": {"top_k": 0}}))
    assert "greater than or equal to 1" in fields["params.top_k"]
    fields = _fields(api.post("/v1/jobs", json={**QUICK, "params": {"temperature": 1}}))
    assert "unknown parameter" in fields["params.temperature"]
    fields = _fields(api.post("/v1/jobs", json={**QUICK, "params": {"top_k": 0, "seed": 1}}))
    assert set(fields) == {"params.top_k", "params.seed"}  # every one, not the first
    broken = {
        "task": QUICK["task"],
        "inputs": "hi",
        "callback_url": "ftp://example.org/x",
        "revision": "main",
    }
    fields = _fields(api.post("/v1/jobs", json=broken))
    assert set(fields) == {"model", "callback_url", "revision"}
    assert "http" in fields["callback_url"]
    fields = _fields(api.post("/v1/jobs", json={**QUICK, "task": "sing"}))
    assert "unknown task 'sing'" in fields["task"]
    not_json = api.post("/v1/jobs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and "not JSON" in not_json.json()["error"]["message"]
    assert len(api.get("/v1/jobs", params={"limit": 200}).json()["jobs"]) == before


def test_probes_metrics_and_docs(anonymous: httpx.Client, api: httpx.Client) -> None:
    assert anonymous.get("/healthz").json()["status"] == "ok"
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    api.get("/v1/jobs/00000000-0000-4000-8000-000000000000")
    submit(api, PARKED)
    metrics = anonymous.get("/metrics").text
    assert 'pipeq_gateway_jobs_submitted_total{task="fine-tune"}' in metrics
    assert (
        'pipeq_gateway_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}'
        in metrics
    )
    schema = anonymous.get("/openapi.json").json()
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert "callback_url" in body["schema"]["properties"]
    assert {"/v1/jobs/{job_id}/events", "/readyz", "/metrics"} <= set(schema["paths"])
    assert anonymous.get("/docs").status_code == 200
