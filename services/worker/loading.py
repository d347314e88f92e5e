"""``from_pretrained`` as the registry asks: source, revision, dtype, device.

Every handler loads its model and processor through :func:`load_pretrained` and
:func:`load_processor`, so placement options live in one place. Outside errors
(a missing folder, a corrupt checkpoint) become :class:`ModelFailure` or
:class:`ConfigError` here, at the boundary.
"""

from __future__ import annotations

from typing import Any

from shared.errors import ConfigError, translating
from shared.registry import ModelSpec

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def pretrained_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Keyword arguments every ``from_pretrained`` call of ``spec`` shares."""
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision:
        kwargs["revision"] = spec.revision
    return kwargs


def torch_dtype(spec: ModelSpec) -> Any:
    import torch

    if spec.dtype == "auto":
        return "auto"
    return getattr(torch, DTYPES[spec.dtype])


def load_pretrained(auto_class: Any, spec: ModelSpec, device: str, **extra: Any) -> Any:
    """The model of ``spec`` through ``auto_class``, on ``device``, in eval mode."""
    with translating(f"loading model {spec.alias!r}"):
        try:
            model = auto_class.from_pretrained(
                spec.location, dtype=torch_dtype(spec), **pretrained_kwargs(spec), **extra
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"model {spec.alias!r} ({spec.source}): cannot load: {exc}") from exc
        model.to(device)
        model.eval()
        return model


def load_processor(auto_class: Any, spec: ModelSpec, **extra: Any) -> Any:
    """The tokenizer, image processor or feature extractor that belongs to ``spec``."""
    with translating(f"loading the processor of {spec.alias!r}"):
        try:
            return auto_class.from_pretrained(spec.location, **pretrained_kwargs(spec), **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"model {spec.alias!r}: cannot load its processor: {exc}") from exc
