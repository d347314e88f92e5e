"""The one place pipeq reads its configuration from the environment.

Every process builds its :class:`Settings` through :func:`get_settings`, which
reads ``PIPEQ_*`` variables once, on first call, never at import time. Tests and
the CLI that change the environment call ``get_settings.cache_clear()``.

Secrets (the two URLs, which carry passwords) may come from files instead:
``PIPEQ_DATABASE_URL_FILE`` and ``PIPEQ_BROKER_URL_FILE`` name a file whose
content is the URL (Docker and Kubernetes secrets are mounted so). Either
way they are kept out of ``repr`` and logged only through :func:`redact_url`.

With nothing set, pipeq runs embedded under ``PIPEQ_HOME`` (default ``./.pipeq``):
a SQLite database and kombu's filesystem transport, both of which work across
processes on one host. Set ``PIPEQ_BROKER_URL=amqp://...`` and
``PIPEQ_DATABASE_URL=postgresql+psycopg://...`` and the same code runs on
RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    ByteSize,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from shared.durations import format_duration, parse_duration
from shared.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_BROKER = "filesystem://"
# What kombu's py-amqp transport takes, and the embedded broker (a folder of files).
BROKER_SCHEMES = frozenset({"amqp", "amqps", "pyamqp", "filesystem"})
_ZERO = timedelta(0)

#: Seconds a job may run, per queue (a task name as key overrides its queue's).
DEFAULT_TIME_LIMITS: dict[str, float] = {
    "nlp": 300.0,
    "vision": 300.0,
    "audio": 900.0,
    "train": 12 * 3600.0,
}


class Settings(BaseSettings):
    """pipeq's configuration; every field is read from ``PIPEQ_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="PIPEQ_", extra="ignore")

    home: Path = Field(Path(".pipeq"), description="Folder for embedded data.")
    # URLs carry passwords: kept out of repr, and logged only through redact_url().
    broker_url: str = Field("", repr=False, description="Celery broker URL; empty: embedded.")
    database_url: str = Field("", repr=False, description="SQLAlchemy URL; empty: SQLite.")
    models: Path | None = Field(None, description="Model registry file (TOML).")

    blob_dir: Path | None = Field(None, description="Root for file references in job inputs.")
    data_dir: Path | None = Field(None, description="Root for fine-tuning data sets.")
    model_store: Path | None = Field(None, description="Where fine-tuned models are written.")
    finetune_max_inline_rows: int = Field(10_000, ge=1, description="Rows a job may carry.")
    finetune_max_rows: int = Field(1_000_000, ge=1, description="Rows a data file may hold.")

    max_message_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_file_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="Largest blob file a job input may reference."
    )
    inline_inputs_bytes: int = Field(
        64 * 1024, ge=0, description="Inputs larger than this are stored as a digest only."
    )
    memory_budget: ByteSize | None = Field(
        None, gt=0, description="Bytes of model tensors a worker keeps loaded (2GiB, 512MB...)."
    )
    log_level: str = "INFO"
    log_json: bool = False

    # Beat (services/beat). Durations read like 7d, 12h, 10m, 90s, or seconds;
    # a retention of "never" keeps that state's jobs for ever.
    retain_succeeded: timedelta | None = Field(timedelta(days=7))
    retain_failed: timedelta | None = Field(timedelta(days=30))
    retain_cancelled: timedelta | None = Field(timedelta(days=7))
    retain_workers: timedelta | None = Field(
        timedelta(days=7), description="Forget workers not seen for this long."
    )
    heartbeat_timeout: timedelta = Field(
        timedelta(minutes=10), gt=_ZERO, description="A RUNNING job silent this long is failed."
    )
    housekeeping_interval: timedelta = Field(timedelta(minutes=1), gt=_ZERO)
    worker_ping_interval: timedelta = Field(timedelta(seconds=30), gt=_ZERO)
    worker_ping_timeout: timedelta = Field(timedelta(seconds=1), gt=_ZERO)
    beat_poll_interval: timedelta = Field(
        timedelta(seconds=1),
        gt=_ZERO,
        description="Beat's longest sleep: how soon it sees a change.",
    )

    # The HTTP gateway (services/gateway).
    key_cache_seconds: float = Field(
        5.0, ge=0, description="How long a gateway process trusts a looked-up API key."
    )
    events_poll_seconds: float = Field(0.25, gt=0, description="SSE: how often a job is read.")
    webhooks: bool = Field(True, description="Whether gateway processes deliver webhooks.")
    webhook_poll_seconds: float = Field(1.0, gt=0)
    webhook_backoff_seconds: float = Field(2.0, gt=0, description="First retry delay; doubles.")
    webhook_backoff_max_seconds: float = Field(600.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_timeout_seconds: float = Field(10.0, gt=0)

    # Delivery and faults (README, "Reliability").
    database_url_file: Path | None = Field(None, description="File holding the database URL.")
    broker_url_file: Path | None = Field(None, description="File holding the broker URL.")
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a worker stamps the jobs it runs."
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="A RUNNING job silent this long may be taken over by a redelivery."
    )
    time_limits: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TIME_LIMITS),
        description="Seconds per queue or task; merged over the defaults.",
    )
    db_retry_seconds: float = Field(
        300.0, ge=0, description="How long a worker retries a state write before handing back."
    )
    publish_retry_seconds: float = Field(
        30.0, ge=0, description="How long a producer retries a publish while the broker is away."
    )

    # Observability (README, "Running at scale").
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Worker: serve Prometheus metrics here (0: any free port).",
    )
    metrics_host: str = Field("0.0.0.0", description="Worker: the address metrics listen on.")
    task_events: bool = Field(
        False,
        description="Celery task events, for Flower (RabbitMQ only). Off by default: three "
        "event messages a job cost a worker about a millisecond of CPU per job.",
    )

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator(
        "retain_succeeded",
        "retain_failed",
        "retain_cancelled",
        "retain_workers",
        "heartbeat_timeout",
        "housekeeping_interval",
        "worker_ping_interval",
        "worker_ping_timeout",
        "beat_poll_interval",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value.strip().lower() == "never" else parse_duration(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("PIPEQ_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if value and scheme not in BROKER_SCHEMES:
            raise ValueError(
                f"PIPEQ_BROKER_URL must be an amqp:// URL (or amqps://), got a {scheme}:// one"
                if "://" in value
                else "PIPEQ_BROKER_URL must be an amqp:// URL, like amqp://user:pass@host:5672/vhost"
            )
        return value

    @field_validator("time_limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, float]) -> dict[str, float]:
        for key, seconds in value.items():
            if not seconds > 0:
                raise ValueError(f"time limit of {key!r} must be > 0 seconds")
        return {**DEFAULT_TIME_LIMITS, **value}

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        for name in ("database_url", "broker_url"):
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            if getattr(self, name):
                raise ValueError(f"set PIPEQ_{name.upper()} or PIPEQ_{name.upper()}_FILE, not both")
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"PIPEQ_{name.upper()}_FILE: cannot read {path}: {exc}") from None
            setattr(self, name, value)
        Settings._known_database(self.database_url)
        Settings._known_broker(self.broker_url)
        return self

    @model_validator(mode="after")
    def _heartbeats_fit_the_timeout(self) -> Settings:
        timeout = self.heartbeat_timeout
        if timeout.total_seconds() <= 2 * self.heartbeat_seconds:
            raise ValueError(
                f"PIPEQ_HEARTBEAT_TIMEOUT ({format_duration(timeout)}) must be longer than two "
                f"heartbeats (PIPEQ_HEARTBEAT_SECONDS={self.heartbeat_seconds:g}): beat would "
                "fail live jobs as lost"
            )
        return self

    def time_limit(self, task: str, queue: str) -> float:
        """Seconds a job of ``task`` (on ``queue``) may run."""
        return (
            self.time_limits.get(task)
            or self.time_limits.get(queue)
            or max(DEFAULT_TIME_LIMITS.values())
        )

    # Derived locations. They are properties, not fields, so that changing
    # PIPEQ_HOME moves all of them at once.

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'pipeq.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or EMBEDDED_BROKER

    @property
    def embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem:")

    def half_embedded(self) -> str | None:
        """Why a server database with the embedded broker (or the reverse) is likely a
        forgotten export, or None: workers on the servers would never see these jobs."""
        sqlite = self.resolved_database_url.startswith("sqlite")
        if self.embedded_broker and not sqlite:
            return (
                "PIPEQ_DATABASE_URL names a server but PIPEQ_BROKER_URL is unset: jobs go to "
                f"the embedded broker in {self.broker_folder}, which no worker on RabbitMQ reads"
            )
        if sqlite and not self.embedded_broker and not self.database_url:
            return (
                "PIPEQ_BROKER_URL is set but PIPEQ_DATABASE_URL is not: job states go to "
                f"{self.resolved_database_url}, which workers on other hosts cannot read"
            )
        return None

    @property
    def broker_folder(self) -> Path:
        return (self.home / "broker").resolve()

    @property
    def registry_path(self) -> Path:
        return (self.models or self.home / "models.toml").resolve()

    @property
    def resolved_blob_dir(self) -> Path:
        return (self.blob_dir or self.home / "blobs").resolve()

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    @property
    def resolved_model_store(self) -> Path:
        return (self.model_store or self.home / "store").resolve()


def parse_bytes(value: str, *, what: str) -> int:
    """``2GiB``, ``512 MB``, ``1.5GB`` or plain bytes, as an int; a ConfigError otherwise."""

    try:
        size = int(TypeAdapter(ByteSize).validate_python(value))
    except ValidationError:
        raise ConfigError(f"{what}: not a size: {value!r} (try 2GiB or 512MB)") from None
    if size <= 0:
        raise ConfigError(f"{what}: must be more than 0 bytes, got {value!r}")
    return size


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use; a bad value is a
    :class:`ConfigError` naming each variable at fault (and not echoing its value, which
    may hold a password)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError("bad settings: " + "; ".join(map(_problem, exc.errors()))) from None
    except SettingsError as exc:  # a JSON setting (PIPEQ_TIME_LIMITS) that does not parse
        field = str(exc).removeprefix('error parsing value for field "').partition('"')[0]
        raise ConfigError(f"bad settings: PIPEQ_{field.upper()}: not JSON") from None
    if mixed := settings.half_embedded():
        log.warning("%s", mixed)
    return settings


def _problem(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # the settings as a whole (a URL and its _FILE both set, say)
        return message
    field, *within = error["loc"]  # a key inside a JSON setting: PIPEQ_TIME_LIMITS['nlp']
    name = f"PIPEQ_{str(field).upper()}" + "".join(f"[{part!r}]" for part in within)
    return message if message.startswith(name) else f"{name}: {message}"


def redact_url(url: str) -> str:
    """A URL fit for logs: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
