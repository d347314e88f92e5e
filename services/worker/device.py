"""Pinning a worker to one device, before torch is imported.

``--device cuda:1`` sets ``CUDA_VISIBLE_DEVICES=1``: the process then sees that
GPU alone, as ``cuda:0``. ``--device cpu`` hides every GPU. This must run before
anything imports torch, since CUDA reads the variable once, at initialisation.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass

from shared.errors import ConfigError

DEVICE = re.compile(r"^(cpu|cuda:(\d+(?:,\d+)*))$")


@dataclass(frozen=True)
class Placement:
    """Where a worker runs: what the user asked for, and what torch will call it."""

    requested: str
    visible_devices: str
    torch_device: str

    @property
    def gpus(self) -> int:
        return len(self.visible_devices.split(",")) if self.visible_devices else 0


def parse_device(device: str) -> Placement:
    """``cpu``, ``cuda:N`` or ``cuda:N,M`` (several GPUs for one large model)."""
    match = DEVICE.match(device.strip())
    if not match:
        raise ConfigError(f"--device must be cpu or cuda:N (or cuda:N,M), got {device!r}")
    if match.group(1) == "cpu":
        return Placement(device, "", "cpu")
    return Placement(device, match.group(2), "cuda:0")


def pin_device(device: str) -> Placement:
    """Set ``CUDA_VISIBLE_DEVICES`` for ``device``; refuses once torch is loaded."""
    placement = parse_device(device)
    if "torch" in sys.modules:
        raise ConfigError("pin_device() must run before torch is imported")
    os.environ["CUDA_VISIBLE_DEVICES"] = placement.visible_devices
    return placement


def pin_threads(threads: int | None) -> None:
    """Torch's threads for one operation (OpenMP's and MKL's), before torch is imported;
    ``None`` leaves torch's default (a thread per core)."""
    if threads is None:
        return
    if "torch" in sys.modules:
        raise ConfigError("pin_threads() must run before torch is imported")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = str(threads)


def worker_name(queues: tuple[str, ...], placement: Placement) -> str:
    device = placement.requested.replace(":", "").replace(",", "-")
    return f"{'+'.join(queues)}-{device}@{socket.gethostname()}"


def numbered(name: str, number: int) -> str:
    """One of several processes of a worker: ``nlp-cpu@host`` -> ``nlp-cpu-2@host``."""
    base, at, host = name.partition("@")
    return f"{base}-{number}{at}{host}"


def check_visible(placement: Placement) -> None:
    """Refuse a ``cuda:N`` this process cannot see (no such GPU, a torch without CUDA) with
    one line, before any model loads; torch's own error comes later and as a traceback."""
    if not placement.gpus:
        return
    import torch

    seen = torch.cuda.device_count()
    if seen < placement.gpus:
        cuda = torch.version.cuda or "none: a CPU-only build"
        raise ConfigError(
            f"--device {placement.requested}: this process sees {seen} GPU(s) "
            f"(torch {torch.__version__}, CUDA {cuda}); use --device cpu or a GPU this "
            "machine has (nvidia-smi lists them)"
        )
