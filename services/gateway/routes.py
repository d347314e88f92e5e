"""The /v1/jobs routes: HTTP in and out; the work is :class:`services.gateway.service.Gateway`'s.

A job's body is the job message itself (:class:`shared.jobs.JobRequest`), checked
by :func:`shared.jobs.parse_job` exactly as a worker checks a message, so a job
the gateway accepts is one a worker accepts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AfterValidator, BeforeValidator
from starlette.concurrency import run_in_threadpool

from services.gateway import metrics
from services.gateway.auth import Caller, authenticated
from services.gateway.errors import ApiError
from services.gateway.schemas import (
    MAX_IDEMPOTENCY_KEY,
    ErrorBody,
    JobPage,
    Submitted,
    WebhookView,
)
from services.gateway.service import Gateway
from shared.errors import UnsupportedTask
from shared.jobs import JobRequest, JobView, parse_job
from shared.queues import queue_for
from shared.states import State

router = APIRouter(
    prefix="/v1",
    tags=["jobs"],
    responses={
        401: {"model": ErrorBody, "description": "No valid API key."},
        503: {"model": ErrorBody, "description": "Database or broker unavailable; retry."},
    },
)

CallerDep = Annotated[Caller, Depends(authenticated)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such job for this tenant."}
}


def gateway(request: Request) -> Gateway:
    """This process's :class:`Gateway` (a plain call, not a dependency: see auth.py)."""
    found: Gateway = request.app.state.gateway
    return found


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413, f"the body is {size} bytes or more; the limit is {limit} (PIPEQ_MAX_MESSAGE_BYTES)"
    )


def _job_body(raw: bytes, header_key: str | None) -> JobRequest:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, f"the body is not JSON: {exc}", type="invalid_job") from None
    job = parse_job(data)
    key = header_key or job.idempotency_key
    if header_key and job.idempotency_key and header_key != job.idempotency_key:
        raise ApiError(422, "Idempotency-Key and the body's idempotency_key differ")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, f"idempotency keys are at most {MAX_IDEMPOTENCY_KEY} characters")
    return job.model_copy(update={"idempotency_key": key}) if key != job.idempotency_key else job


@router.post(
    "/jobs",
    status_code=202,
    response_model=Submitted,
    responses={
        200: {"model": Submitted, "description": "Idempotent replay: the job already made."},
        409: {"model": ErrorBody, "description": "The id or Idempotency-Key is taken."},
        413: {"model": ErrorBody, "description": "Past PIPEQ_MAX_MESSAGE_BYTES."},
        422: {"model": ErrorBody, "description": "An invalid job, with field errors."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
        }
    },
)
async def submit_job(
    request: Request,
    response: Response,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY,
            description="Retrying with the same key returns the same job (per tenant).",
        ),
    ] = None,
) -> Submitted:
    """Queue a job (the same JSON as an AMQP job message); 202 with where to follow it."""
    gw = gateway(request)
    raw = await _read_body(request, gw.settings.max_message_bytes)
    job_request = _job_body(raw, idempotency_key)
    job, replayed = await run_in_threadpool(gw.submit, job_request, caller)
    status_url = str(request.url_for("get_job", job_id=job.id))
    response.headers["Location"] = status_url
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.SUBMITTED.labels(job.task).inc()
    return Submitted(
        id=job.id,
        state=job.state,
        status_url=status_url,
        events_url=str(request.url_for("job_events", job_id=job.id)),
        job=job,
    )


@router.get("/jobs/{job_id}", response_model=JobView, responses=_NOT_FOUND)
async def get_job(job_id: str, request: Request, caller: CallerDep) -> JobView:
    """A job's state, progress, result or error."""
    return await run_in_threadpool(gateway(request).get, job_id, caller)


def _known_task(task: str | None) -> str | None:
    if task is None:
        return None
    try:
        queue_for(task)
    except UnsupportedTask as exc:  # names the tasks pipeq serves
        raise ValueError(str(exc)) from None
    return task


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# As the CLI takes them: any case for a state, only pipeq's tasks (a typo is a 422, not []).
StateQuery = Annotated[State | None, BeforeValidator(_upper), Query()]
TaskQuery = Annotated[str | None, AfterValidator(_known_task), Query(max_length=64)]


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    request: Request,
    caller: CallerDep,
    state: StateQuery = None,
    task: TaskQuery = None,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=512),
) -> JobPage:
    """This tenant's jobs, newest first; follow ``next_cursor`` for older ones."""
    gw = gateway(request)
    return await run_in_threadpool(
        lambda: gw.page(caller, state=state, task=task, cursor=cursor, limit=limit)
    )


@router.post("/jobs/{job_id}/cancel", response_model=JobView, responses=_NOT_FOUND)
async def cancel_job(job_id: str, request: Request, caller: CallerDep) -> JobView:
    """Cancel a job: a queued one at once (CANCELLED), a running one at its next check."""
    return await run_in_threadpool(gateway(request).cancel, job_id, caller)


@router.get("/jobs/{job_id}/webhook", response_model=WebhookView, responses=_NOT_FOUND)
async def job_webhook(job_id: str, request: Request, caller: CallerDep) -> WebhookView:
    """The job's callback: its state and every delivery attempt."""
    return await run_in_threadpool(gateway(request).webhook, job_id, caller)
