"""``pipeq models list`` / ``check`` and a worker refusing a registry it cannot serve.

On the embedded default: the worker answers ``models list`` over the filesystem
broker's remote control, as it would over RabbitMQ.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tomli_w

from tests.helpers import WorkerProcess, pipeq

TINY = "tiny-text-classification"


@pytest.fixture(scope="module")
def broken_env(
    cli_env: dict[str, str], tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A registry with the tiny classifier and a GPTQ checkpoint whose backend is absent."""
    folder = tmp_path_factory.mktemp("models")
    gptq = folder / "gptq"
    shutil.copytree(tiny_registry.parent / TINY, gptq)
    config = json.loads((gptq / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (gptq / "config.json").write_text(json.dumps(config))
    entries = {
        TINY: {"task": "text-classification", "source": str(tiny_registry.parent / TINY)},
        "gptq-model": {"task": "text-classification", "source": "gptq", "quantization": "gptq"},
    }
    (folder / "models.toml").write_text(tomli_w.dumps({"models": entries}))
    return {**cli_env, "PIPEQ_MODELS": str(folder / "models.toml")}


def test_list_shows_the_registry_without_workers(cli_env: dict[str, str]) -> None:
    done = pipeq("models", "list", "--registry-only", env=cli_env)
    header, _, *rows = done.stdout.splitlines()
    columns = ["alias", "task", "queue", "placement", "dtype", "quantization", "from", "loaded"]
    assert header.split() == columns
    expected = [TINY, "text-classification", "nlp", "worker", "auto", "none", "registry"]
    assert expected in [row.split() for row in rows]


def test_list_shows_what_the_worker_holds(
    embedded_worker: WorkerProcess, cli_env: dict[str, str]
) -> None:
    listed = json.loads(pipeq("models", "list", "--json", "--timeout", "3", env=cli_env).stdout)
    (worker,) = listed["workers"]
    assert listed["workers"][worker]["device"] == "cpu"
    entry = next(m for m in listed["models"] if m["alias"] == TINY)
    (held,) = entry["loaded"]
    assert held["worker"] == worker and held["bytes"] > 0 and held["in_use"] == 0
    assert held["devices"] == ["cpu"] and held["dtypes"] == ["float32"]
    human = pipeq("models", "list", "--timeout", "3", env=cli_env).stdout
    assert f"MiB on {worker}" in human and "1 worker(s) answered" in human


def test_check_loads_runs_and_reports(broken_env: dict[str, str]) -> None:
    done = pipeq("models", "check", TINY, "gptq-model", "--json", env=broken_env, check=False)
    assert done.returncode == 1  # one model fails
    reports = {r["alias"]: r for r in map(json.loads, done.stdout.splitlines())}
    good, bad = reports[TINY], reports["gptq-model"]
    assert good["ok"] and good["load_seconds"] > 0 and good["tensor_bytes"] > 0
    assert good["devices"] == ["cpu"] and good["output"][0]["label"] in ("NEGATIVE", "POSITIVE")
    assert good["run_ms"] > 0 and good["quantization"] == "none"
    assert not bad["ok"] and "gptq needs optimum, gptqmodel" in bad["error"]


def test_worker_refuses_a_backend_it_lacks(broken_env: dict[str, str]) -> None:
    done = pipeq("worker", "--queue", "nlp", env=broken_env, check=False, timeout=120)
    assert done.returncode == 2
    assert "error: model 'gptq-model': gptq needs optimum, gptqmodel" in done.stderr
    assert "pip install optimum gptqmodel" in done.stderr and "Traceback" not in done.stderr
