"""The model registry: the only models a job may name, read from a TOML file.

::

    [models.chat]
    task = "text-generation"
    source = "models/chat"        # a folder (relative to this file) or a Hub id
    revision = "main"             # Hub ids only
    dtype = "bfloat16"            # auto | float32 | bfloat16 | float16
    device_map = "auto"           # auto | cpu | cuda:N; absent: the worker's device
    quantization = { method = "bnb-4bit", quant_type = "nf4", double_quant = true }
    trust_remote_code = false
    gguf_file = "model.Q8_0.gguf" # a GGUF file in the source, dequantized on load
    adapter = "adapters/chat-lora" # a peft adapter (LoRA, prefix...) applied to the source

A job names an alias and nothing else: it can never choose a source, a
revision, a placement or ``trust_remote_code``. This module only reads and
checks the file (no torch, so producers use it too); the worker's
``services.worker.loading`` turns a spec into ``from_pretrained`` arguments and
checks, at worker start, that the backends a spec needs are installed.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import ConfigError, UnknownModel, UnsupportedTask
from shared.jobs import ALIAS_PATTERN
from shared.queues import queue_for
from shared.settings import Settings

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEVICE_MAP = r"^(auto|cpu|cuda:\d+)$"
FloatDtype = Literal["float32", "bfloat16", "float16"]
QuantMethod = Literal["none", "bnb-8bit", "bnb-4bit", "gptq", "awq"]

#: The options each quantization method takes (beyond ``method``).
QUANT_OPTIONS: dict[str, frozenset[str]] = {
    "bnb-8bit": frozenset({"skip_modules", "int8_threshold"}),
    "bnb-4bit": frozenset({"skip_modules", "quant_type", "double_quant", "compute_dtype"}),
}


class BatchOptions(BaseModel):
    """Batching across jobs (``services/worker/batching.py``); unset: the task's default.

    ``max_size`` counts inputs (a job's list counts whole); 1 switches batching off.
    ``max_wait_ms`` bounds how long a batch waits for jobs already on their way; a lone
    job never waits.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int | None = Field(None, ge=1, le=1024)
    max_wait_ms: float | None = Field(None, ge=0, le=10_000)


class BatchLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_size: int
    max_wait_ms: float


#: Per task: classifiers batch wide; generation pads to its longest input, so narrower;
#: fine-tuning is one job at a time.
BATCH_DEFAULTS: dict[str, BatchLimits] = {
    **{
        task: BatchLimits(max_size=32, max_wait_ms=5)
        for task in ("text-classification", "token-classification", "fill-mask")
    },
    "question-answering": BatchLimits(max_size=16, max_wait_ms=5),
    **{
        task: BatchLimits(max_size=8, max_wait_ms=10)
        for task in ("text-generation", "summarization", "translation")
    },
    **{
        task: BatchLimits(max_size=16, max_wait_ms=10)
        for task in ("image-classification", "object-detection", "image-segmentation")
    },
    "automatic-speech-recognition": BatchLimits(max_size=8, max_wait_ms=10),
    "audio-classification": BatchLimits(max_size=16, max_wait_ms=10),
}
NO_BATCHING = BatchLimits(max_size=1, max_wait_ms=0)


class Quantization(BaseModel):
    """How a model's weights are stored in memory.

    ``bnb-8bit`` and ``bnb-4bit`` quantize a full-precision checkpoint while it
    loads (bitsandbytes); ``gptq`` and ``awq`` name checkpoints that are already
    quantized (their ``config.json`` carries the details) and need their backend
    package. ``quantization = "bnb-8bit"`` is short for ``{ method = "bnb-8bit" }``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: QuantMethod = "none"
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = False
    compute_dtype: FloatDtype | None = None
    skip_modules: list[str] = Field(
        default_factory=list, description="Modules kept in full precision (small heads)."
    )
    int8_threshold: float = Field(6.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _options_fit_method(self) -> Quantization:
        misplaced = self.model_fields_set - {"method"} - QUANT_OPTIONS.get(self.method, set())
        if misplaced:
            raise ValueError(
                f"{', '.join(sorted(misplaced))}: not an option of quantization {self.method!r}"
            )
        return self

    @property
    def label(self) -> str:
        """Short form for listings: ``bnb-4bit nf4 dq bfloat16``."""
        if self.method != "bnb-4bit":
            return self.method
        parts: list[str] = [self.method, self.quant_type]
        if self.double_quant:
            parts.append("dq")
        if self.compute_dtype:
            parts.append(self.compute_dtype)
        return " ".join(parts)


class ModelSpec(BaseModel):
    """One registry entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: str = Field(pattern=ALIAS_PATTERN)
    task: str
    source: str
    revision: str | None = None
    dtype: Literal["auto"] | FloatDtype = "auto"
    device_map: str | None = Field(
        None, pattern=DEVICE_MAP, description="auto, cpu or cuda:N; absent: the worker's device."
    )
    quantization: Quantization = Field(default_factory=Quantization)
    gguf_file: str | None = Field(None, description="A .gguf file in the source.")
    adapter: str | None = Field(
        None, description="A peft adapter folder (relative to this file) applied on load."
    )
    trust_remote_code: bool = False
    defaults: dict[str, Any] = Field(default_factory=dict, description="Parameter defaults.")
    limits: dict[str, int | float] = Field(default_factory=dict, description="Parameter caps.")
    batch: BatchOptions = Field(default_factory=BatchOptions)
    process: bool = Field(
        False,
        description="Serve the model from a process of its own: its forward passes then run "
        "outside the worker's GIL (services/worker/model_process.py).",
    )
    #: Set by the loader: the folder the registry file lives in.
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("task")
    @classmethod
    def _served(cls, task: str) -> str:
        try:
            queue_for(task)
        except UnsupportedTask as exc:
            raise ValueError(str(exc)) from None
        return task

    @model_validator(mode="after")
    def _gguf_is_its_own_format(self) -> ModelSpec:
        if self.gguf_file is not None and self.quantization.method in ("gptq", "awq"):
            raise ValueError("gguf_file cannot be combined with a gptq or awq checkpoint")
        return self

    @property
    def batching(self) -> BatchLimits:
        """The registry's ``batch`` options over the task's defaults."""
        default = BATCH_DEFAULTS.get(self.task, NO_BATCHING)
        return BatchLimits(
            max_size=self.batch.max_size or default.max_size,
            max_wait_ms=default.max_wait_ms
            if self.batch.max_wait_ms is None
            else self.batch.max_wait_ms,
        )

    @property
    def quantized(self) -> bool:
        return self.quantization.method != "none"

    @property
    def placement(self) -> str:
        """Where the model goes: its own ``device_map``, or the worker's device."""
        return self.device_map or "worker"

    @property
    def queue(self) -> str:
        return queue_for(self.task)

    @property
    def adapter_location(self) -> str | None:
        """The adapter folder, absolute, if the entry names one."""
        if self.adapter is None:
            return None
        path = Path(self.adapter).expanduser()
        return str((path if path.is_absolute() else self.base_dir / path).resolve())

    @property
    def location(self) -> str:
        """What ``from_pretrained`` gets: a local folder, or a Hub id."""
        path = Path(self.source).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if path.exists():
            return str(path.resolve())
        if HUB_ID.match(self.source):
            return self.source
        raise ConfigError(
            f"model {self.alias!r}: source {self.source!r} is neither a folder "
            f"({path}) nor a Hub id"
        )


class Registry:
    """Aliases to specs, as read from one registry file."""

    def __init__(self, specs: dict[str, ModelSpec], path: Path | None = None) -> None:
        self.specs = specs
        self.path = path

    def get(self, alias: str) -> ModelSpec:
        try:
            return self.specs[alias]
        except KeyError:
            raise UnknownModel(f"unknown model {alias!r}: not in the registry") from None

    def for_queues(self, queues: tuple[str, ...] | list[str]) -> list[ModelSpec]:
        return [spec for spec in self.specs.values() if spec.queue in queues]

    def __contains__(self, alias: object) -> bool:
        return alias in self.specs

    def __len__(self) -> int:
        return len(self.specs)


def parse_registry(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Registry:
    models = data.get("models", {})
    unknown = set(data) - {"models"}
    if unknown or not isinstance(models, dict):
        raise ConfigError(f"registry {path}: expected only [models.<alias>] tables")
    specs = {}
    for alias, entry in models.items():
        try:
            specs[alias] = ModelSpec.model_validate({**entry, "alias": alias, "base_dir": base_dir})
        except ValidationError as exc:
            raise ConfigError(f"registry {path}: model {alias!r}: {problems(exc)}") from None
        except TypeError as exc:
            raise ConfigError(f"registry {path}: model {alias!r}: {exc}") from None
    return Registry(specs, path)


def problems(error: ValidationError) -> str:
    """pydantic's report on one entry, as one line: ``field: problem (or another); ...``."""
    found: dict[str, list[str]] = {}
    for item in error.errors():
        # The field's path, less pydantic's names for the union branch it tried.
        field = ".".join(str(part) for part in item["loc"] if re.fullmatch(r"\w+", str(part)))
        field = field or "entry"
        message = str(item["msg"]).removeprefix("Value error, ")
        if message not in found.setdefault(field, []):
            found[field].append(message)
    return "; ".join(f"{field}: {', or '.join(messages)}" for field, messages in found.items())


def load_registry(path: Path, *, required: bool = False) -> Registry:
    """Read and check the registry file at ``path``; an absent file is an empty registry,
    or, where ``required`` (a path the user named), an error."""
    if not path.exists():
        if required:
            raise ConfigError(f"no registry at {path} (PIPEQ_MODELS names a file that is absent)")
        return Registry({}, path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"registry {path}: {exc}") from exc
    return parse_registry(data, base_dir=path.parent.resolve(), path=path)


def configured_registry(settings: Settings) -> Registry:
    """The registry of ``settings``: a ``PIPEQ_MODELS`` naming no file is an error (a typo
    would otherwise leave a worker serving nothing); the default file may be absent."""
    return load_registry(settings.registry_path, required=settings.models is not None)


def dump_registry(specs: list[ModelSpec]) -> dict[str, Any]:
    """The TOML-ready form of ``specs`` (what ``build-tiny`` writes)."""
    models = {}
    for spec in specs:
        entry = spec.model_dump(
            exclude={"alias", "base_dir"}, exclude_none=True, exclude_defaults=True
        )
        entry["task"] = spec.task
        entry["source"] = spec.source
        models[spec.alias] = entry
    return {"models": models}
