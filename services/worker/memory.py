"""Measuring memory: the process's resident set, and what a model's tensors hold."""

from __future__ import annotations

import os
import resource
from typing import Any


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tensor_bytes(model: Any) -> int:
    """Bytes held by a torch module's parameters and buffers (quantized ones too)."""
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return total


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
