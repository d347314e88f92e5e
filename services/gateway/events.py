"""``GET /v1/jobs/{id}/events``: a job's state and progress as server-sent events.

::

    event: state      data: the job (JobView)        on connect, then on every state change
    event: progress   data: {id, state, progress}    when a running job reports progress
    : keep-alive                                      a comment every 15 s of silence

The stream ends after the job's terminal state (SUCCEEDED, FAILED, CANCELLED),
whose event carries the result or error. The gateway learns of changes by
reading the job row every ``PIPEQ_EVENTS_POLL_SECONDS`` (0.25 s by default):
the row is the truth, workers write nothing else, and one indexed read per
stream per poll is cheap next to a job's run time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from services.gateway import metrics
from services.gateway.routes import CallerDep, gateway
from services.gateway.schemas import ErrorBody
from shared.jobs import JobView
from shared.states import State

router = APIRouter(prefix="/v1", tags=["jobs"])

KEEP_ALIVE_SECONDS = 15.0


async def _first(job_id: str, request: Request, caller: CallerDep) -> JobView:
    """The job as it stands; a 404 here is answered before the stream starts."""
    return await run_in_threadpool(gateway(request).get, job_id, caller)


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"model": ErrorBody, "description": "No such job for this tenant."}},
)
async def job_events(
    job_id: str,
    request: Request,
    caller: CallerDep,
    first: Annotated[JobView, Depends(_first)],
) -> AsyncIterator[ServerSentEvent]:
    """Follow a job until it ends (text/event-stream)."""
    gw = gateway(request)
    metrics.SSE_STREAMS.inc()
    try:
        job = first
        yield ServerSentEvent(event="state", data=job.model_dump(mode="json"))
        quiet_since = time.monotonic()
        while not State(job.state).terminal:
            await asyncio.sleep(gw.settings.events_poll_seconds)
            found = await run_in_threadpool(gw.owned, job_id, caller)
            if found is None:  # the row is gone (purged): nothing more will happen
                return
            if found.state != job.state:
                yield ServerSentEvent(event="state", data=found.model_dump(mode="json"))
                quiet_since = time.monotonic()
            elif found.progress != job.progress:
                progress = {"id": found.id, "state": found.state, "progress": found.progress}
                yield ServerSentEvent(event="progress", data=progress)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEP_ALIVE_SECONDS:
                yield ServerSentEvent(comment="keep-alive")
                quiet_since = time.monotonic()
            job = found
    finally:
        metrics.SSE_STREAMS.dec()
