"""The job message: the contract between any producer and pipeq's workers.

A job message is one self-contained JSON object (:class:`JobRequest`); every
producer (the Python client, the CLI, the gateway, a foreign AMQP client) sends
it as the single positional argument of the Celery task :data:`TASK_NAME`.
:func:`parse_job` is the one place that turns untrusted JSON into a request,
for producers before they publish and for workers when a message arrives.
:class:`JobView` is how a job is shown to users (CLI ``--json``, gateway, client).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidInput, InvalidJob
from shared.params import validate_params
from shared.queues import NLP, queue_for

#: The Celery task name every job message carries in its ``task`` header.
TASK_NAME: Final = "pipeq.run_job"

ALIAS_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Inputs one job may carry as a list: texts, else questions, images or audio clips.
MAX_TEXTS: Final = 1024
MAX_ITEMS: Final = 256


def max_items(task: str) -> int:
    """How many inputs a job of ``task`` may list (checked at submit and by the worker)."""
    return MAX_TEXTS if queue_for(task) == NLP and task != "question-answering" else MAX_ITEMS


class JobRequest(BaseModel):
    """What a producer asks for. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(None, description="UUID; the worker uses the Celery task id if absent.")
    task: str = Field(description="A task pipeq serves, such as text-classification.")
    model: str = Field(pattern=ALIAS_PATTERN, description="A model alias from the registry.")
    inputs: Any = Field(description="Task inputs: a text, a list of texts, an object...")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=9)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    callback_url: str | None = Field(
        None,
        max_length=2000,
        description="http(s) URL the gateway POSTs the finished job to, signed (README).",
    )

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID") from None

    @property
    def queue(self) -> str:
        return queue_for(self.task)

    def with_id(self) -> JobRequest:
        """This request with an id, a fresh UUID if it had none."""
        return self if self.id else self.model_copy(update={"id": str(uuid.uuid4())})


class ErrorView(BaseModel):
    type: str
    message: str


class JobView(BaseModel):
    """A job as users see it."""

    id: str
    state: str
    task: str
    model: str
    queue: str
    priority: int
    result: Any = None
    error: ErrorView | None = None
    progress: dict[str, Any] | None = None
    attempts: int = 0
    worker: str | None = None
    cancel_requested: bool = False  # a RUNNING job asked to stop: its worker will, soon
    idempotency_key: str | None = None
    schedule_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a job, for callers that show errors per field."""

    location: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(str(part) for part in self.location) or 'job'}: {self.message}"


class JobSchemaError(InvalidJob):
    """A job that does not fit :class:`JobRequest`, with every problem it has, per field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("invalid job: " + "; ".join(str(problem) for problem in problems))
        self.problems = problems


def _problems(error: ValidationError) -> list[FieldProblem]:
    return [FieldProblem(tuple(item["loc"]), item["msg"]) for item in error.errors()]


def _reject_non_finite(value: Any, where: tuple[str | int, ...] = ()) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise JobSchemaError([FieldProblem(where, "NaN and infinity are not allowed")])
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, (*where, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_non_finite(item, (*where, index))


def parse_job(raw: Any) -> JobRequest:
    """Validate untrusted JSON as a job: schema, task, and the task's parameters.

    Raises :class:`InvalidJob` (or a subclass) with a message that names the
    offending field (:class:`JobSchemaError` also lists them one by one);
    inputs are checked by the worker's handler.
    """
    if not isinstance(raw, dict):
        raise InvalidJob(f"a job must be a JSON object, got {type(raw).__name__}")
    _reject_non_finite(raw)
    try:
        request = JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise JobSchemaError(_problems(exc)) from None
    queue_for(request.task)
    validate_params(request.task, request.params)
    inputs = request.inputs
    if isinstance(inputs, list) and len(inputs) > (limit := max_items(request.task)):
        raise InvalidInput(f"inputs: {len(inputs)} items in one job; the limit is {limit}")
    return request
