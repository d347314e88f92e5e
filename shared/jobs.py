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
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidJob
from shared.params import validate_params
from shared.queues import queue_for

#: The Celery task name every job message carries in its ``task`` header.
TASK_NAME: Final = "pipeq.run_job"

ALIAS_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


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
    idempotency_key: str | None = None
    schedule_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "job"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _reject_non_finite(value: Any, where: str = "job") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidJob(f"{where}: NaN and infinity are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_non_finite(item, f"{where}[{index}]")


def parse_job(raw: Any) -> JobRequest:
    """Validate untrusted JSON as a job: schema, task, and the task's parameters.

    Raises :class:`InvalidJob` (or a subclass) with a message that names the
    offending field; inputs are checked by the worker's handler.
    """
    if not isinstance(raw, dict):
        raise InvalidJob(f"a job must be a JSON object, got {type(raw).__name__}")
    _reject_non_finite(raw)
    try:
        request = JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidJob(f"invalid job: {_describe(exc)}") from None
    queue_for(request.task)
    validate_params(request.task, request.params)
    return request
