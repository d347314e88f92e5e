"""Registry options (dtype, placement, quantization, GGUF) are checked when the file is read.

These need no torch: producers read the same registry. A job can never set any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from shared.errors import ConfigError, InvalidJob
from shared.jobs import parse_job
from shared.registry import ModelSpec, dump_registry, load_registry
from shared.settings import Settings, parse_bytes


def _load(tmp_path: Path, **entry: Any) -> ModelSpec:
    path = tmp_path / "models.toml"
    model = {"task": "text-classification", "source": "org/model", **entry}
    path.write_text(tomli_w.dumps({"models": {"m": model}}))
    return load_registry(path).get("m")


def test_defaults_are_the_plain_model(tmp_path: Path) -> None:
    spec = _load(tmp_path)
    assert spec.dtype == "auto" and spec.device_map is None and spec.placement == "worker"
    assert spec.quantization.method == "none" and not spec.quantized
    assert spec.gguf_file is None and spec.trust_remote_code is False


def test_every_option(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        dtype="bfloat16",
        device_map="cuda:1",
        quantization={
            "method": "bnb-4bit",
            "quant_type": "fp4",
            "double_quant": True,
            "compute_dtype": "bfloat16",
            "skip_modules": ["classifier", "pooler"],
        },
        trust_remote_code=True,
        batch={"max_size": 8, "max_wait_ms": 2},
        limits={"max_length": 256},
    )
    assert spec.placement == "cuda:1" and spec.quantized
    assert spec.quantization.label == "bnb-4bit fp4 dq bfloat16"
    assert spec.quantization.skip_modules == ["classifier", "pooler"]
    assert spec.trust_remote_code and spec.batch.max_size == 8 and spec.limits["max_length"] == 256


def test_shorthand_and_round_trip(tmp_path: Path) -> None:
    spec = _load(tmp_path, quantization="bnb-8bit", device_map="auto", gguf_file="m.Q8_0.gguf")
    assert spec.quantization.method == "bnb-8bit" and spec.quantization.int8_threshold == 6.0
    written = tmp_path / "again.toml"
    written.write_text(tomli_w.dumps(dump_registry([spec])))
    assert load_registry(written).get("m") == spec


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"device_map": "gpu"}, "device_map"),
        ({"device_map": "cuda"}, "device_map"),
        ({"device_map": "cuda:0,1"}, "device_map"),
        ({"quantization": "int3"}, "method"),
        ({"quantization": {"method": "bnb-8bit", "quant_type": "nf4"}}, "quant_type"),
        ({"quantization": {"method": "gptq", "skip_modules": ["x"]}}, "skip_modules"),
        ({"quantization": {"method": "none", "double_quant": True}}, "double_quant"),
        ({"quantization": {"method": "bnb-4bit", "quant_type": "nf3"}}, "quant_type"),
        ({"quantization": {"method": "bnb-4bit", "bits": 4}}, "bits"),
        ({"quantization": "awq", "gguf_file": "m.gguf"}, "gguf_file"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_options_are_config_errors(
    tmp_path: Path, entry: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _load(tmp_path, **entry)


@pytest.mark.parametrize(
    "field",
    [
        {"trust_remote_code": True},
        {"device_map": "auto"},
        {"quantization": "none"},
        {"dtype": "float32"},
        {"source": "evil/model"},
        {"revision": "main"},
        {"gguf_file": "x.gguf"},
    ],
)
def test_a_job_can_set_none_of_them(field: dict[str, Any]) -> None:
    job = {"task": "text-classification", "model": "m", "inputs": "hi", **field}
    with pytest.raises(InvalidJob, match=next(iter(field))):
        parse_job(job)
    as_params = {"task": "text-classification", "model": "m", "inputs": "hi", "params": field}
    with pytest.raises(InvalidJob, match=next(iter(field))):
        parse_job(as_params)


def test_memory_budget_setting_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().memory_budget is None
    monkeypatch.setenv("PIPEQ_MEMORY_BUDGET", "2GiB")
    assert Settings().memory_budget == 2 * 2**30
    monkeypatch.setenv("PIPEQ_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="memory_budget"):
        Settings()
    assert parse_bytes("512MiB", what="--memory-budget") == 512 * 2**20
    assert parse_bytes("1.5 GB", what="--memory-budget") == 1_500_000_000
    for bad in ("lots", "0", "-1GiB"):
        with pytest.raises(ConfigError, match="--memory-budget"):
            parse_bytes(bad, what="--memory-budget")


def test_the_readme_registry_example_reads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## The model registry") :]
    example = section[section.index("```toml") + len("```toml") : section.index("```\n", 10)]
    path = tmp_path / "models.toml"
    path.write_text(example)
    registry = load_registry(path)
    chat = registry.get("chat")
    assert chat.device_map == "auto" and chat.quantization.label == "bnb-4bit nf4 dq bfloat16"
    assert chat.quantization.skip_modules == ["lm_head"] and chat.limits["max_new_tokens"] == 512
    assert registry.get("small-llm").gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert registry.get("sentiment").batch.max_size == 32
