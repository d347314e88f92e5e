"""Device pinning happens before torch loads, through the environment it sets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.worker.device import check_visible, parse_device
from shared.errors import ConfigError

PROBE = """
import json, os, sys
from services.worker.device import pin_device
placement = pin_device(sys.argv[1])
import torch
print(json.dumps({"env": os.environ["CUDA_VISIBLE_DEVICES"], "torch": placement.torch_device,
                  "cuda_devices": torch.cuda.device_count()}))
"""


@pytest.mark.parametrize(
    ("device", "visible", "torch_device"),
    [("cpu", "", "cpu"), ("cuda:1", "1", "cuda:0"), ("cuda:0,3", "0,3", "cuda:0")],
)
def test_pin_sets_visible_devices_before_torch(
    device: str, visible: str, torch_device: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, device], capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["env"] == visible and seen["torch"] == torch_device
    if device == "cpu":
        assert seen["cuda_devices"] == 0


@pytest.mark.parametrize("bad", ["gpu", "cuda", "cuda:x", "cpu:0", ""])
def test_bad_devices(bad: str) -> None:
    with pytest.raises(ConfigError, match="--device"):
        parse_device(bad)


def test_refuses_after_torch() -> None:
    code = (
        "import torch\nfrom services.worker.device import pin_device\n"
        "try:\n    pin_device('cpu')\nexcept Exception as e:\n    print(type(e).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ConfigError"


def test_a_gpu_the_worker_cannot_see_is_refused_in_one_line() -> None:
    # More GPUs than any machine here has (none on a CPU host): the worker's preflight.
    placement = parse_device("cuda:" + ",".join(str(n) for n in range(64)))
    with pytest.raises(ConfigError, match=r"--device cuda:0,1,.*: this process sees \d+ GPU"):
        check_visible(placement)
    check_visible(parse_device("cpu"))
