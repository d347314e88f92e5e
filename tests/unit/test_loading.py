"""Registry options reach ``from_pretrained``; specs a worker cannot load are refused at start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from services.worker.handlers import handler_for
from services.worker.loading import (
    check_backends,
    check_checkpoint,
    check_spec,
    is_installed,
    load_pretrained,
    model_device,
    pipeline_device,
    placement_kwargs,
    required_packages,
)
from services.worker.memory import placement
from services.worker.registry import Models
from shared.errors import ConfigError
from shared.registry import ModelSpec, Registry, load_registry

TASK = "text-classification"


def _spec(tmp_path: Path, tiny_registry: Path, **options: Any) -> ModelSpec:
    """The tiny classifier under a registry entry with ``options``."""
    folder = tiny_registry.parent / f"tiny-{TASK}"
    entry = {"task": TASK, "source": str(folder), **options}
    path = tmp_path / "models.toml"
    path.write_text(tomli_w.dumps({"models": {"m": entry}}))
    return load_registry(path).get("m")


CPU = {"disable_mmap": True}


@pytest.mark.parametrize(
    ("options", "device", "expected"),
    [
        ({}, "cpu", CPU),
        ({"device_map": "cpu"}, "cpu", {**CPU, "device_map": {"": "cpu"}}),
        ({"device_map": "cpu"}, "cuda:0", {**CPU, "device_map": {"": "cpu"}}),
        ({"device_map": "auto"}, "cpu", {**CPU, "device_map": "auto"}),
        ({"device_map": "auto"}, "cuda:0", {"device_map": "auto"}),
        ({}, "cuda:0", {"device_map": {"": "cuda:0"}}),
        ({"quantization": "bnb-8bit"}, "cpu", {**CPU, "device_map": {"": "cpu"}, "bits": 8}),
        (
            {"quantization": "bnb-4bit", "device_map": "auto"},
            "cuda:0",
            {"device_map": "auto", "bits": 4},
        ),
    ],
)
def test_placement_kwargs(
    tmp_path: Path,
    tiny_registry: Path,
    options: dict[str, Any],
    device: str,
    expected: dict[str, Any],
) -> None:
    kwargs = placement_kwargs(_spec(tmp_path, tiny_registry, **options), device)
    config = kwargs.pop("quantization_config", None)
    expected = dict(expected)
    bits = expected.pop("bits", None)
    assert kwargs == expected
    if bits is None:
        assert config is None
    else:
        assert getattr(config, f"load_in_{bits}bit") is True


def test_a_cpu_model_is_in_process_memory(tmp_path: Path) -> None:
    """transformers maps this checkpoint by default (the tiny classifier it happens not to)."""
    from transformers import AutoModelForSequenceClassification

    from services.worker.tiny.quantizable import build

    folder = tmp_path / "mapped-by-default"
    build(folder)
    spec = ModelSpec(alias="m", task=TASK, source=str(folder))
    checkpoint = str(folder / "model.safetensors")
    mapped = AutoModelForSequenceClassification.from_pretrained(folder)
    assert checkpoint in Path("/proc/self/maps").read_text()
    del mapped
    model = load_pretrained(AutoModelForSequenceClassification, spec, "cpu")
    assert checkpoint not in Path("/proc/self/maps").read_text()
    assert placement(model)["devices"] == ["cpu"]


def test_a_spec_device_wins_over_the_worker(tmp_path: Path, tiny_registry: Path) -> None:
    assert model_device(_spec(tmp_path, tiny_registry), "cuda:0") == "cuda:0"
    assert model_device(_spec(tmp_path, tiny_registry, device_map="cpu"), "cuda:0") == "cpu"
    assert model_device(_spec(tmp_path, tiny_registry, device_map="auto"), "cuda:0") == "cuda:0"


@pytest.mark.parametrize(
    ("options", "dtypes"),
    [
        ({}, ["float32"]),
        ({"dtype": "bfloat16"}, ["bfloat16"]),
        ({"dtype": "float16", "device_map": "cpu"}, ["float16"]),
        ({"device_map": "auto"}, ["float32"]),
    ],
)
def test_the_loaded_model_says_what_the_registry_asked(
    tmp_path: Path, tiny_registry: Path, options: dict[str, Any], dtypes: list[str]
) -> None:
    from transformers import AutoModelForSequenceClassification

    spec = _spec(tmp_path, tiny_registry, **options)
    model = load_pretrained(AutoModelForSequenceClassification, spec, "cpu")
    where = placement(model)
    assert where["dtypes"] == dtypes and where["devices"] == ["cpu"]
    assert where["quantization"] == "none" and not model.training
    assert pipeline_device(model, "cpu") == "cpu"


def test_trust_remote_code_only_from_the_registry(tmp_path: Path, tiny_registry: Path) -> None:
    from services.worker.loading import pretrained_kwargs

    assert pretrained_kwargs(_spec(tmp_path, tiny_registry))["trust_remote_code"] is False
    trusted = _spec(tmp_path, tiny_registry, trust_remote_code=True)
    assert pretrained_kwargs(trusted)["trust_remote_code"] is True


def test_gguf_file_goes_to_model_and_processor(tmp_path: Path, tiny_registry: Path) -> None:
    from services.worker.loading import pretrained_kwargs

    spec = _spec(tmp_path, tiny_registry, gguf_file="m.Q8_0.gguf")
    assert pretrained_kwargs(spec)["gguf_file"] == "m.Q8_0.gguf"
    assert "gguf" in required_packages(spec)


def _prequantized(tmp_path: Path, tiny_registry: Path, method: str) -> Path:
    """The tiny classifier's folder, its config.json claiming ``method`` quantization."""
    folder = tmp_path / method
    shutil.copytree(tiny_registry.parent / f"tiny-{TASK}", folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": method, "bits": 4}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("method", "packages"), [("gptq", "optimum, gptqmodel"), ("awq", "gptqmodel, accelerate")]
)
def test_missing_backend_message(
    tmp_path: Path, tiny_registry: Path, method: str, packages: str
) -> None:
    spec = _spec(tmp_path, tiny_registry, quantization=method)
    with pytest.raises(ConfigError, match=rf"'m': {method} needs {packages}, .*pip install"):
        check_backends(spec, installed=lambda name: False)
    check_backends(spec, installed=lambda name: True)


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_worker_start_refuses_a_missing_backend(
    tmp_path: Path, tiny_registry: Path, method: str
) -> None:
    folder = _prequantized(tmp_path, tiny_registry, method)
    spec = _spec(tmp_path, tiny_registry, source=str(folder), quantization=method)
    registry = Registry({"m": spec})
    if all(is_installed(name) for name in required_packages(spec)):
        Models(registry, device="cpu", queues=("nlp",))  # starts: the job would load it
    else:
        with pytest.raises(ConfigError, match=rf"{method} needs .*pip install"):
            Models(registry, device="cpu", queues=("nlp",))


def test_prequantized_checkpoint_must_be_declared(tmp_path: Path, tiny_registry: Path) -> None:
    folder = _prequantized(tmp_path, tiny_registry, "gptq")
    with pytest.raises(ConfigError, match='set quantization = "gptq"'):
        check_checkpoint(_spec(tmp_path, tiny_registry, source=str(folder)))
    with pytest.raises(ConfigError, match='set quantization = "gptq"'):
        check_checkpoint(_spec(tmp_path, tiny_registry, source=str(folder), quantization="awq"))
    check_checkpoint(_spec(tmp_path, tiny_registry, source=str(folder), quantization="gptq"))


def test_gptq_entry_needs_a_quantized_checkpoint(tmp_path: Path, tiny_registry: Path) -> None:
    with pytest.raises(ConfigError, match="pre-quantized checkpoint"):
        check_checkpoint(_spec(tmp_path, tiny_registry, quantization="gptq"))


@pytest.mark.parametrize(("device", "gpus"), [("cpu", 0), ("cuda:0", 1)])
def test_cuda_placement_beyond_the_visible_gpus(
    tmp_path: Path, tiny_registry: Path, device: str, gpus: int
) -> None:
    spec = _spec(tmp_path, tiny_registry, device_map="cuda:1")
    with pytest.raises(ConfigError, match=rf"cuda:1.*sees {gpus} GPU"):
        check_spec(spec, device=device, gpus=gpus)
    check_spec(spec, device=device, gpus=2)


def test_handler_serves_a_model_placed_by_device_map(tmp_path: Path, tiny_registry: Path) -> None:
    spec = _spec(tmp_path, tiny_registry, device_map="auto", dtype="bfloat16")
    models = Models(Registry({"m": spec}), device="cpu", queues=("nlp",))
    loaded = models.get("m")
    handler = handler_for(TASK)
    params = handler.params(spec, {})
    result = handler.encode(handler.predict(loaded, ["good"], params), params, False)
    assert result[0]["label"] in ("NEGATIVE", "POSITIVE")
    inventory = models.inventory()["models"][0]
    assert inventory["dtypes"] == ["bfloat16"] and inventory["devices"] == ["cpu"]


def test_pipeline_device_for_a_model_spread_by_accelerate(
    tmp_path: Path, tiny_registry: Path
) -> None:
    from transformers import AutoModelForSequenceClassification

    model = load_pretrained(
        AutoModelForSequenceClassification, _spec(tmp_path, tiny_registry), "cpu"
    )
    assert pipeline_device(model, "cuda:0") == "cuda:0"
    model.hf_device_map = {"bert.embeddings": 0, "bert.encoder": 1}  # as dispatch_model sets it
    assert pipeline_device(model, "cuda:0") is None
