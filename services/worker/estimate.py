"""How much memory a model will take, guessed before its first load.

The memory budget must make room for a model before loading it, not after (on
a GPU, after is too late). The first time, the size is read from the
checkpoint's own headers, without loading any weights: safetensors files start
with a JSON table of every tensor's dtype and shape, and GGUF files list their
tensors' shapes (read with transformers' own GGUF reader, in milliseconds). Each
tensor is then sized as it will be held: in the registry's ``dtype``, and for
bitsandbytes specs large 2-D weights at one byte (8-bit) or a little over half a
byte (4-bit, with its block scales). Once a model has been loaded,
:class:`services.worker.registry.Models` uses the bytes it measured instead. A
checkpoint it cannot read (a Hub id not on disk, a pickled ``.bin``) is guessed
from its file sizes, or 0 when absent.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

from shared.errors import ConfigError
from shared.registry import ModelSpec

#: Bytes per element of safetensors dtypes.
SAFETENSORS_SIZES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
FLOAT_TYPES = {"F64", "F32", "F16", "BF16"}
DTYPE_SIZES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: 4-bit weights: half a byte each, plus one float32 scale per block of 64.
FOUR_BIT = 0.5 + 4 / 64
QUANTIZABLE_MIN = 64


def expected_bytes(spec: ModelSpec) -> int:
    """The tensor bytes ``spec`` is expected to take once loaded; 0 if unknown."""
    try:
        folder = Path(spec.location)
    except ConfigError:
        return 0
    if not folder.is_dir():
        return 0
    if spec.gguf_file:
        return _gguf_bytes(folder / spec.gguf_file, spec)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(
            _sized(spec, name, dtype, shape) for f in files for name, dtype, shape in _header(f)
        )
    return sum(f.stat().st_size for f in folder.glob("*.bin"))


def _header(path: Path) -> Iterator[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every tensor in a safetensors file, from its JSON header."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        table = json.loads(handle.read(length))
    for name, info in table.items():
        if name != "__metadata__":
            yield name, info["dtype"], list(info["shape"])


def _sized(spec: ModelSpec, name: str, dtype: str, shape: list[int]) -> int:
    numel = 1
    for dim in shape:
        numel *= dim
    size = float(SAFETENSORS_SIZES.get(dtype, 4))
    if dtype in FLOAT_TYPES and spec.dtype != "auto":
        size = DTYPE_SIZES[spec.dtype]
    if _quantizable(spec, name, shape):
        size = 1.0 if spec.quantization.method == "bnb-8bit" else FOUR_BIT
    return int(numel * size)


def _quantizable(spec: ModelSpec, name: str, shape: list[int]) -> bool:
    """Whether bitsandbytes will quantize this tensor: a Linear weight, not a skipped one."""
    if spec.quantization.method not in ("bnb-8bit", "bnb-4bit"):
        return False
    if len(shape) != 2 or min(shape) < QUANTIZABLE_MIN or not name.endswith(".weight"):
        return False
    skipped = ("embed", "lm_head", *spec.quantization.skip_modules)
    return not any(part in name for part in skipped)


def _gguf_bytes(path: Path, spec: ModelSpec) -> int:
    """GGUF weights are dequantized on load: element count times the dtype they load in."""
    try:
        from transformers.integrations.gguf.reader import GgufHeader

        header = GgufHeader.from_file(str(path))
    except (ImportError, OSError, ValueError, KeyError):
        return path.stat().st_size if path.exists() else 0
    size = DTYPE_SIZES.get(spec.dtype) or (header.dtype.itemsize if header.dtype else 4)
    return int(sum(math.prod(tensor.shape) for tensor in header.tensors) * size)
