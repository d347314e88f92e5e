"""A user's mistakes in the settings, on the real services: each ends in one line that names
the fix, and no job is left QUEUED that no worker will ever see."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from shared.client import Client
from shared.errors import BrokerRefused, SchemaMissing
from shared.settings import Settings
from tests.helpers import WorkerProcess, pipeq, with_path
from tests.infra import Infra, isolated_services


def _with_password(url: str, password: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    user = parts.username or "guest"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture(params=["vhost", "password"])
def refused_url(request: pytest.FixtureRequest, infra: Infra) -> str:
    if request.param == "vhost":
        return with_path(infra.broker_url, f"/no-such-vhost-{uuid.uuid4().hex[:8]}")
    return _with_password(infra.broker_url, f"wrong-{uuid.uuid4().hex[:8]}")


def test_a_broker_that_refuses_the_login_fails_the_job_at_once(
    settings: Settings, refused_url: str
) -> None:
    client = Client(settings.model_copy(update={"broker_url": refused_url}))
    job_id = str(uuid.uuid4())
    started = time.monotonic()
    with pytest.raises(BrokerRefused, match="check the user, password and vhost"):
        client.submit("text-classification", "tiny-text-classification", "hi", job_id=job_id)
    assert time.monotonic() - started < 10  # not retried like a broker away (30 s)
    job = client.get(job_id)
    assert job.state == "FAILED" and job.error is not None
    assert job.error.type == "broker_refused"
    assert job.error.message.startswith("not queued: ")
    with pytest.raises(BrokerRefused):
        client.submit_many([{"task": "fill-mask", "model": "tiny-fill-mask", "inputs": "[MASK]"}])


def test_a_job_never_queued_gives_its_idempotency_key_back(
    settings: Settings, client: Client, infra: Infra
) -> None:
    refused = Client(settings.model_copy(update={"broker_url": with_path(infra.broker_url, "/x")}))
    key = f"retry-me-{uuid.uuid4().hex[:8]}"
    job = {"task": "fill-mask", "model": "tiny-fill-mask", "inputs": "[MASK]"}
    first = str(uuid.uuid4())
    with pytest.raises(BrokerRefused):
        refused.submit(**job, idempotency_key=key, job_id=first)
    failed = client.get(first)
    assert failed.state == "FAILED" and failed.idempotency_key is None
    retried = client.submit(**job, idempotency_key=key)  # the URL fixed, the same key
    assert retried.state == "QUEUED" and retried.id != first
    assert client.submit(**job, idempotency_key=key).id == retried.id  # and the key holds again


def test_the_cli_says_so_in_one_line(pipeq_env: dict[str, str], infra: Infra) -> None:
    env = {**pipeq_env, "PIPEQ_BROKER_URL": with_path(infra.broker_url, "/no-such-vhost")}
    done = pipeq(
        "submit", "fill-mask", "-m", "tiny-fill-mask", "-t", "[MASK]", env=env, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: publishing the job: the broker refused pipeq")
    assert "vhost no-such-vhost not found" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_postgresql_database_never_migrated_is_named_with_the_fix(
    pipeq_env: dict[str, str], tmp_path: Path
) -> None:
    with isolated_services() as bare:  # a new database and vhost, no `pipeq db upgrade`
        env = {
            **pipeq_env,
            "PIPEQ_DATABASE_URL": bare.database_url,
            "PIPEQ_BROKER_URL": bare.broker_url,
        }
        submitted = pipeq("submit", "fill-mask", "-m", "m", "-t", "x", env=env, check=False)
        assert submitted.returncode == 2, submitted.stderr
        assert "the database has no table 'jobs' (pipeq's schema is missing" in submitted.stderr
        assert "run `pipeq db upgrade` against this database first" in submitted.stderr
        assert "Traceback" not in submitted.stderr

        worker = pipeq("worker", "--queue", "nlp", env=env, check=False)
        assert worker.returncode == 2, worker.stderr
        last = worker.stderr.strip().splitlines()[-1]
        assert last == (  # naming the database: a wrong PIPEQ_HOME or URL is a common cause
            "error: the database has no pipeq tables; run `pipeq db upgrade` against this "
            f"database first ({bare.database_url})"
        )
        with pytest.raises(SchemaMissing):
            Client(Settings(database_url=bare.database_url, broker_url=bare.broker_url)).list()


def test_a_worker_reaches_the_broker_before_loading_any_model(
    pipeq_env: dict[str, str], infra: Infra, tmp_path: Path
) -> None:
    refused = {**pipeq_env, "PIPEQ_BROKER_URL": with_path(infra.broker_url, "/no-such-vhost")}
    done = pipeq("worker", "-Q", "nlp", env=refused, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: connecting to the broker: the broker refused")
    assert not any("models loaded" in line for line in lines)
    beat = pipeq("beat", "--once", env=refused, check=False)  # its runs would all fail
    assert beat.returncode == 2, beat.stderr
    assert beat.stderr.startswith("error: connecting to the broker: the broker refused pipeq")

    away = {**pipeq_env, "PIPEQ_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    waiting = WorkerProcess(queues=["nlp"], env=away, log=tmp_path / "away.log")
    waiting.start(wait=False)
    try:  # it waits for the broker (it may be starting), saying so, with no model loaded
        waiting.wait_for(r"(?s)broker unavailable.*trying again in.*trying again in", timeout=60)
        assert "models loaded" not in waiting.log()
    finally:
        waiting.stop()
