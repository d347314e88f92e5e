"""Placement, dtype, quantization and the budget on CUDA: these run where a GPU is present.

On a CPU-only host every test here is skipped (the CPU paths are covered by
test_loading, test_quantization and test_budget); on a GPU host they run with
the CUDA build of torch. The pinning probe runs in a fresh process, since
``CUDA_VISIBLE_DEVICES`` only counts before CUDA initialises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from services.worker.handlers import Loaded, handler_for
from services.worker.memory import placement
from services.worker.registry import Models
from services.worker.tiny.quantizable import alias, write_registry
from shared.registry import Registry, load_registry

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PROBE = """
import json, sys
from services.worker.device import pin_device
pin_device(sys.argv[1]) if sys.argv[1] != "all" else None
import torch
count = torch.cuda.device_count()
print(json.dumps([str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]))
"""


def _probe(device: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, device], capture_output=True, text=True, check=True
    )
    uuids: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return uuids


def test_pinned_worker_sees_its_gpu_alone() -> None:
    every = _probe("all")
    for index, uuid in enumerate(every):
        assert _probe(f"cuda:{index}") == [uuid]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return load_registry(write_registry(tmp_path_factory.mktemp("gpu-quantizable")))


def _label_scores(loaded: Loaded) -> list[dict[str, float]]:
    handler = handler_for("text-classification")
    params = handler.params(loaded.spec, {"top_k": None})
    outputs = handler.predict(loaded, ["I love this movie", "the food was awful"], params)
    return [{d["label"]: d["score"] for d in out} for out in outputs]


@pytest.mark.parametrize(("variant", "ratio"), [("int8", 0.75), ("nf4", 0.7), ("fp4", 0.7)])
def test_bitsandbytes_on_cuda(registry: Registry, variant: str, ratio: float) -> None:
    models = Models(registry, device="cuda:0", queues=("nlp",))
    reference, quantized = models.get(alias("fp32")), models.get(alias(variant))
    assert placement(reference.model)["devices"] == ["cuda:0"]
    assert placement(quantized.model)["devices"] == ["cuda:0"]
    assert quantized.tensor_bytes < ratio * reference.tensor_bytes
    tolerance = 0.02 if variant == "int8" else 0.06
    for ref, out in zip(_label_scores(reference), _label_scores(quantized), strict=True):
        assert max(abs(ref[label] - out[label]) for label in ref) <= tolerance


def _registry(tmp_path: Path, registry: Registry, **options: Any) -> Registry:
    source = registry.get(alias("fp32")).location
    entry = {"task": "text-classification", "source": source, **options}
    path = tmp_path / "models.toml"
    path.write_text(tomli_w.dumps({"models": {"m": entry}}))
    return load_registry(path)


@pytest.mark.parametrize(
    ("options", "devices", "dtypes"),
    [
        ({"dtype": "float16"}, ["cuda:0"], ["float16"]),
        ({"dtype": "bfloat16", "device_map": "auto"}, None, ["bfloat16"]),
        ({"device_map": "cpu"}, ["cpu"], ["float32"]),
        ({"device_map": "cuda:0", "quantization": "bnb-4bit"}, ["cuda:0"], None),
    ],
)
def test_placement_and_dtype_on_a_gpu_worker(
    tmp_path: Path,
    registry: Registry,
    options: dict[str, Any],
    devices: list[str] | None,
    dtypes: list[str] | None,
) -> None:
    models = Models(_registry(tmp_path, registry, **options), device="cuda:0", queues=("nlp",))
    loaded = models.get("m")
    where = placement(loaded.model)
    if devices is not None:
        assert where["devices"] == devices
    else:
        assert all(device.startswith("cuda:") for device in where["devices"])
    if dtypes is not None:
        assert where["dtypes"] == dtypes
    assert _label_scores(loaded)


def test_eviction_gives_gpu_memory_back(tmp_path: Path, registry: Registry) -> None:
    models = Models(registry, device="cuda:0", queues=("nlp",), budget=1)
    size = models.get(alias("fp32")).tensor_bytes
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    models.get(alias("nf4"))  # the budget holds one model: fp32 goes
    torch.cuda.synchronize()
    assert list(models.loaded) == [alias("nf4")]
    assert torch.cuda.memory_allocated() < before - size / 2
