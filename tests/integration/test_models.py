"""Quantized models served by a real worker under a memory budget, seen by ``pipeq models list``.

The worker has its own vhost and database (not the session's shared worker, which
serves the tiny registry on the same queues). Budget 16 MiB: fp32 (12.7 MiB) and
nf4 (2.0 MiB) load at start; int8 (3.5 MiB) is past it, loads on first use and
evicts the least recently used idle model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.worker.tiny.quantizable import alias, write_registry
from shared.client import Client
from shared.settings import Settings
from tests.helpers import WorkerProcess, pipeq, service_env
from tests.infra import isolated_services

TEXTS = ["I love this movie", "the food was terrible and the service was slow"]
BUDGET = "16MiB"


@pytest.fixture(scope="module")
def quant_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    registry = write_registry(tmp_path_factory.mktemp("quant"), variants=["fp32", "int8", "nf4"])
    with isolated_services() as urls:
        yield service_env(
            urls.broker_url,
            urls.database_url,
            models=registry,
            home=tmp_path_factory.mktemp("quant-home"),
        )


@pytest.fixture(scope="module")
def quant_worker(
    quant_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("quant-logs") / "worker.log"
    worker = WorkerProcess(
        queues=["nlp"], env=quant_env, log=log, extra=["--memory-budget", BUDGET]
    ).start()
    yield worker
    worker.stop()


def _client(env: dict[str, str]) -> Client:
    return Client(
        Settings(
            broker_url=env["PIPEQ_BROKER_URL"],
            database_url=env["PIPEQ_DATABASE_URL"],
            home=Path(env["PIPEQ_HOME"]),
        )
    )


def _classify(client: Client, model: str) -> list[dict[str, float]]:
    job = client.submit("text-classification", model, TEXTS, params={"top_k": None})
    done = client.wait(job.id, timeout=120)
    assert done.state == "SUCCEEDED", done.error
    return [{d["label"]: d["score"] for d in out} for out in done.result]


def _held(env: dict[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    listed = json.loads(pipeq("models", "list", "--json", "--timeout", "3", env=env).stdout)
    (summary,) = listed["workers"].values()
    held = {m["alias"]: m["loaded"][0] for m in listed["models"] if m["loaded"]}
    return summary, held


def test_quantized_models_serve_jobs_within_the_budget(
    quant_worker: WorkerProcess, quant_env: dict[str, str]
) -> None:
    client = _client(quant_env)
    reference = _classify(client, alias("fp32"))
    nf4 = _classify(client, alias("nf4"))
    summary, held = _held(quant_env)
    assert set(held) == {alias("fp32"), alias("nf4")}
    assert summary["budget"] == 16 * 2**20 and summary["used"] <= summary["budget"]
    assert held[alias("nf4")]["bytes"] < 0.7 * held[alias("fp32")]["bytes"]
    assert held[alias("nf4")]["quantization"] == "bnb-4bit"

    int8 = _classify(client, alias("int8"))  # past the budget: fp32, least recently used, goes
    summary, held = _held(quant_env)
    assert set(held) == {alias("nf4"), alias("int8")} and summary["used"] <= summary["budget"]
    assert held[alias("int8")]["quantization"] == "bnb-8bit"
    assert "int8" in held[alias("int8")]["dtypes"]

    log = quant_worker.log()
    assert "model quant-int8 (about 3.5 MiB) is past the budget; it loads on first use" in log
    assert "evicted model quant-fp32 (least recently used; room for quant-int8" in log
    assert "loaded model quant-int8 (text-classification) on cpu in" in log

    for quantized, tolerance in ((int8, 0.02), (nf4, 0.06)):  # see tests/unit/test_quantization
        for ref, out in zip(reference, quantized, strict=True):
            assert max(ref, key=ref.__getitem__) == max(out, key=out.__getitem__)
            assert max(abs(ref[label] - out[label]) for label in ref) <= tolerance
