"""``from_pretrained`` as the registry asks: source, dtype, placement, quantization.

Every handler loads its model and processor through :func:`load_pretrained` and
:func:`load_processor`, so these options live in one place:

- ``dtype``: ``auto`` keeps the checkpoint's own; otherwise torch's dtype.
- placement: ``device_map = "auto"`` lets accelerate spread the model over the
  GPUs this worker sees (``CUDA_VISIBLE_DEVICES``); ``cpu`` or ``cuda:N`` put it
  on one device (``N`` counts the GPUs the worker sees); absent, the worker's
  device. A model placed by accelerate or quantized while loading is never moved
  with ``.to()`` afterwards.
- quantization: bitsandbytes 8-bit and 4-bit through ``BitsAndBytesConfig``;
  GPTQ and AWQ checkpoints carry their own config. :func:`check_spec` refuses a
  spec whose backend package is missing, at worker start, so that no job ever
  finds out mid-run.
- ``gguf_file``: a GGUF file in the source, dequantized by transformers.

CPU weights are read into the process's own memory (``disable_mmap``), not left
memory-mapped from the checkpoint file as transformers does by default: a worker
holds its models for days, so its memory should be what the budget counts from
the first job on (a mapped model pages in as inputs touch it, and its RSS creeps
up by the size of the embedding matrix), and a checkpoint rewritten on disk must
not change, or crash, a model being served. GPU weights stream from the mapping
straight to the device and keep nothing mapped.

Outside errors (a missing folder, a corrupt checkpoint) become
:class:`ModelFailure` or :class:`ConfigError` here, at the boundary.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, translating
from shared.registry import ModelSpec

#: Import names of the packages each option needs, with what to ``pip install``.
BACKENDS: dict[str, dict[str, str]] = {
    "bnb-8bit": {"bitsandbytes": "bitsandbytes"},
    "bnb-4bit": {"bitsandbytes": "bitsandbytes"},
    "gptq": {"optimum": "optimum", "gptqmodel": "gptqmodel"},
    "awq": {"gptqmodel": "gptqmodel", "accelerate": "accelerate"},
    "gguf": {"gguf": "gguf"},
    "device_map": {"accelerate": "accelerate"},
}


def required_packages(spec: ModelSpec) -> dict[str, str]:
    """Import name -> pip name of every package loading ``spec`` needs beyond transformers."""
    needed: dict[str, str] = {}
    for option, used in (
        (spec.quantization.method, spec.quantized),
        ("gguf", spec.gguf_file is not None),
        ("device_map", spec.device_map is not None or spec.quantized),
    ):
        if used:
            needed.update(BACKENDS.get(option, {}))
    return needed


def check_spec(spec: ModelSpec, *, device: str, gpus: int) -> None:
    """Refuse, with a ConfigError, a spec this worker could not load.

    Run for every model a worker serves when it starts, before it takes a job
    (models loaded later, on first use under a memory budget, are checked then
    too): a missing backend package, a ``cuda:N`` placement the worker cannot
    see, or a pre-quantized checkpoint whose registry entry does not say so.
    """
    check_backends(spec)
    check_placement(spec, device=device, gpus=gpus)
    check_checkpoint(spec)


def check_backends(spec: ModelSpec, *, installed: Callable[[str], bool] | None = None) -> None:
    installed = installed or is_installed
    missing = [pip for name, pip in required_packages(spec).items() if not installed(name)]
    if missing:
        what = spec.quantization.method if spec.quantized else "its options"
        raise ConfigError(
            f"model {spec.alias!r}: {what} needs {', '.join(missing)}, which this worker "
            f"lacks (pip install {' '.join(missing)})"
        )


def check_placement(spec: ModelSpec, *, device: str, gpus: int) -> None:
    if spec.device_map and spec.device_map.startswith("cuda:"):
        index = int(spec.device_map.split(":")[1])
        if index >= gpus:
            raise ConfigError(
                f"model {spec.alias!r}: device_map {spec.device_map!r}, but this worker "
                f"({device}) sees {gpus} GPU(s)"
            )


def check_checkpoint(spec: ModelSpec) -> None:
    declared = _checkpoint_quant_method(spec)
    if declared in ("gptq", "awq") and spec.quantization.method != declared:
        raise ConfigError(
            f"model {spec.alias!r}: the checkpoint is {declared}-quantized; "
            f'set quantization = "{declared}" in its registry entry'
        )
    if spec.quantization.method in ("gptq", "awq") and declared == "":
        raise ConfigError(
            f"model {spec.alias!r}: quantization {spec.quantization.method!r} needs a "
            "pre-quantized checkpoint, and this one's config.json has no quantization_config"
        )


def is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _checkpoint_quant_method(spec: ModelSpec) -> str | None:
    """A local checkpoint's ``quant_method``: "" if it has none, None if unknown (Hub id)."""
    try:
        config = Path(spec.location) / "config.json"
        data = json.loads(config.read_text())
    except (ConfigError, OSError, ValueError):
        return None
    quant = data.get("quantization_config") if isinstance(data, dict) else None
    if not isinstance(quant, dict):
        return ""
    return str(quant.get("quant_method", "unknown")).lower()


def model_device(spec: ModelSpec, worker_device: str) -> str:
    """The device inputs go to: the spec's own single device, else the worker's.

    With ``device_map = "auto"`` accelerate puts the first layers on the worker's
    first visible device, where inputs go.
    """
    if spec.device_map in (None, "auto"):
        return worker_device
    return spec.device_map


def pretrained_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Keyword arguments every ``from_pretrained`` call of ``spec`` shares."""
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision:
        kwargs["revision"] = spec.revision
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    return kwargs


def torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def quantization_config(spec: ModelSpec) -> Any:
    """A ``BitsAndBytesConfig`` for bitsandbytes specs; None otherwise.

    GPTQ and AWQ checkpoints need none: their ``config.json`` carries it.
    """
    quant = spec.quantization
    if quant.method not in ("bnb-8bit", "bnb-4bit"):
        return None
    from transformers import BitsAndBytesConfig

    skip = list(quant.skip_modules) or None
    if quant.method == "bnb-8bit":
        return BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=skip, llm_int8_threshold=quant.int8_threshold
        )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(quant.compute_dtype) if quant.compute_dtype else None,
        llm_int8_skip_modules=skip,
    )


def placement_kwargs(spec: ModelSpec, device: str) -> dict[str, Any]:
    """``from_pretrained`` arguments for where the weights go; empty: plain CPU load.

    A GPU model is loaded straight onto its device (``device_map``), streamed from the
    memory-mapped checkpoint. A CPU model is read into the process's own memory instead
    (``disable_mmap``; see the module's docstring), at the cost of a transient second
    copy while it loads.
    """
    target = model_device(spec, device)
    kwargs: dict[str, Any] = {"disable_mmap": True} if target == "cpu" else {}
    if spec.device_map == "auto":
        kwargs["device_map"] = "auto"
    elif spec.quantized or spec.device_map is not None or target != "cpu":
        kwargs["device_map"] = {"": target}
    config = quantization_config(spec)
    if config is not None:
        kwargs["quantization_config"] = config
    return kwargs


def load_pretrained(auto_class: Any, spec: ModelSpec, device: str, **extra: Any) -> Any:
    """The model of ``spec`` through ``auto_class``, placed as the registry says, in eval mode.

    ``device`` is the worker's device; a spec's own ``device_map`` wins over it. Only a
    plain CPU model is moved with ``.to()`` (a no-op there); every other one is placed
    by ``from_pretrained`` itself.
    """
    kwargs = {"dtype": torch_dtype(spec.dtype), **pretrained_kwargs(spec)}
    kwargs.update(placement_kwargs(spec, device), **extra)
    if spec.quantization.method == "bnb-8bit":
        _quiet_int8_casts()
    with translating(f"loading model {spec.alias!r}"):
        try:
            kwargs.update(adapter_config_kwargs(spec))
            model = auto_class.from_pretrained(spec.location, **kwargs)
            if spec.adapter_location:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, spec.adapter_location)
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ConfigError(f"model {spec.alias!r} ({spec.source}): cannot load: {exc}") from exc
        if "device_map" not in kwargs:
            model.to(model_device(spec, device))
        model.eval()
        return model


def adapter_config_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """For an adapter trained with a new head: the base loads with the adapter's config.

    A fine-tune job saves the trained model's config (labels, ``num_labels``) beside its
    adapter; the base's head is then made to that shape, and peft fills it from the
    adapter (``modules_to_save``).
    """
    adapter = spec.adapter_location
    if adapter is None or not (Path(adapter) / "config.json").exists():
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(adapter)
    return {"config": config, "ignore_mismatched_sizes": True}


class _DropCastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def _quiet_int8_casts() -> None:
    """bitsandbytes logs a warning per int8 layer per forward pass that inputs become float16."""
    noisy = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in noisy.filters):
        noisy.addFilter(_DropCastNotice())


def pipeline_device(model: Any, device: str) -> str | None:
    """What to pass as ``pipeline(device=...)``: None for a model accelerate spread out.

    transformers refuses a device for a model with an ``hf_device_map`` (several
    devices); a model on one device takes its own device.
    """
    return None if getattr(model, "hf_device_map", None) else device


def load_processor(auto_class: Any, spec: ModelSpec, **extra: Any) -> Any:
    """The tokenizer, image processor or feature extractor that belongs to ``spec``."""
    with translating(f"loading the processor of {spec.alias!r}"):
        try:
            return auto_class.from_pretrained(spec.location, **pretrained_kwargs(spec), **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"model {spec.alias!r}: cannot load its processor: {exc}") from exc
