"""Measuring memory: the process's resident set, and what a model's tensors hold.

The worker's memory budget (:mod:`services.worker.registry`) counts a model as
the bytes of its tensors, measured by :func:`tensor_bytes` once it is loaded.
Quantized weights are counted as stored: bitsandbytes keeps a 4-bit weight as
packed ``uint8`` plus a quantization state (block scales, a code book) and an
8-bit weight as ``int8`` plus per-row scales; those side tensors are not
parameters, so they are collected here explicitly. A tensor shared between
modules (tied embeddings) counts once.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import sys
from collections.abc import Iterator
from typing import Any


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of this process, or of ``pid`` (Linux /proc; peak RSS elsewhere)."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _quant_tensors(param: Any) -> Iterator[Any]:
    """The tensors bitsandbytes hangs on a quantized weight, beside its data."""
    scb = getattr(param, "SCB", None)
    if scb is not None:
        yield scb
    state = getattr(param, "quant_state", None)
    while state is not None:
        for name in ("absmax", "code", "offset"):
            tensor = getattr(state, name, None)
            if tensor is not None:
                yield tensor
        state = getattr(state, "state2", None)


def tensor_bytes(model: Any) -> int:
    """Bytes held by a torch module's parameters, buffers and quantization states."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for param in model.parameters():
        for tensor in (param, *_quant_tensors(param)):
            total += _count_once(tensor, seen)
    for buffer in model.buffers():
        total += _count_once(buffer, seen)
    return total


def _count_once(tensor: Any, seen: set[tuple[str, int]]) -> int:
    if tensor.device.type == "meta":
        return 0
    key = (str(tensor.device), tensor.data_ptr())
    if key in seen and key[1] != 0:
        return 0
    seen.add(key)
    return int(tensor.numel() * tensor.element_size())


def placement(model: Any) -> dict[str, Any]:
    """Where the loaded model's weights live and how they are stored, as the model says.

    ``devices`` and ``dtypes`` come from the parameters themselves; ``device_map``
    is accelerate's map when the model is spread over several devices.
    """
    devices: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    for param in model.parameters():
        devices[str(param.device)] = devices.get(str(param.device), 0) + 1
        dtype = str(param.dtype).removeprefix("torch.")
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
    config = getattr(model, "config", None)
    return {
        "devices": sorted(devices, key=devices.__getitem__, reverse=True),
        "dtypes": sorted(dtypes, key=dtypes.__getitem__, reverse=True),
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."),
        "device_map": dict(getattr(model, "hf_device_map", None) or {}),
        "quantization": _quant_method(config),
    }


def _quant_method(config: Any) -> str:
    quant = getattr(config, "quantization_config", None)
    if quant is None:
        return "none"
    if isinstance(quant, dict):
        method = quant.get("quant_method", "unknown")
        bits8, bits4 = quant.get("load_in_8bit"), quant.get("load_in_4bit")
    else:
        method = getattr(quant, "quant_method", "unknown")
        bits8, bits4 = getattr(quant, "load_in_8bit", False), getattr(quant, "load_in_4bit", False)
    method = str(getattr(method, "value", method))
    if method == "bitsandbytes":
        return "bnb-8bit" if bits8 else "bnb-4bit" if bits4 else method
    return method


def freeze_heap() -> int:
    """Leave every object alive now out of the cycle collector's full passes; returns how
    many objects that is.

    A worker holds some 400,000 long-lived objects once torch, transformers and its models
    are loaded, and each full pass over them holds the GIL for 0.2 s (measured with
    MiniLM loaded; one pass fell in a 2,000-job burst): every job thread and the forward
    pass stop meanwhile. Called once the models are loaded and before the first job, so
    nothing frozen is a job's garbage. Frozen objects are still freed when their last
    reference goes; only a cycle among them waits for :func:`release_memory` (``collect``).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def release_memory(*, collect: bool = False) -> None:
    """Give freed model memory back: empty CUDA's cache and trim the C heap.

    A model whose last reference is dropped is freed at once; ``collect`` also runs
    the cycle collector (over a second in a process that imported transformers), for
    a model that reference cycles kept alive, frozen ones (:func:`freeze_heap`) included;
    what is still alive after it is frozen again.
    """
    if collect:
        frozen = gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.collect()
        if frozen:
            gc.freeze()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
