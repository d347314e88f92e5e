"""Errors as HTTP: every failure leaves the gateway as one :class:`ErrorBody` JSON.

::

    no or bad API key                  401 unauthorized (WWW-Authenticate: Bearer)
    JobNotFound, another tenant's job  404 not_found
    Idempotency-Key or id in use       409 conflict
    body past PIPEQ_MAX_MESSAGE_BYTES  413 payload_too_large
    InvalidJob / InvalidParameter /    422 with ``fields``: each offending field's
      UnsupportedTask, bad query         location and what is wrong with it
    TransientError (DB, broker away)   503 with Retry-After
    anything else (a bug)              500 internal_error, logged with its traceback
"""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.gateway.schemas import ErrorBody, ErrorDetail, FieldError
from shared.errors import (
    InvalidJob,
    InvalidParameter,
    JobError,
    JobNotFound,
    PipeqError,
    TransientError,
    UnsupportedTask,
)
from shared.jobs import JobSchemaError

log = logging.getLogger(__name__)

_TYPES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
}


class ApiError(Exception):
    """An answer the gateway decided on: raised anywhere, rendered by :func:`install`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        fields: Iterable[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or _TYPES.get(status, "error")
        self.message = message
        self.fields = list(fields)
        self.headers = headers


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def not_found(job_id: str) -> ApiError:
    return ApiError(404, f"no job {job_id!r}")


def _render(error: ApiError) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(type=error.type, message=error.message, fields=error.fields))
    return JSONResponse(body.model_dump(mode="json"), error.status, headers=error.headers)


def from_pipeq(exc: PipeqError) -> ApiError:
    """The HTTP form of one of pipeq's own errors."""
    if isinstance(exc, JobNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, TransientError):
        return ApiError(503, str(exc), type=exc.code, headers={"Retry-After": "5"})
    if isinstance(exc, InvalidJob | JobError):
        return ApiError(422, str(exc), type=exc.code, fields=_fields(exc))
    return ApiError(500, str(exc), type=exc.code)


def _fields(exc: PipeqError) -> list[FieldError]:
    if isinstance(exc, JobSchemaError):
        return [FieldError(loc=list(p.location), message=p.message) for p in exc.problems]
    if isinstance(exc, InvalidParameter):
        return [
            FieldError(loc=["params", *each.name.split(".")], message=each.problem)
            for each in exc.every
        ]
    if isinstance(exc, UnsupportedTask):
        return [FieldError(loc=["task"], message=str(exc))]
    return []


def _from_validation(exc: RequestValidationError) -> ApiError:
    fields = [
        FieldError(loc=[part for part in item["loc"] if part != "body"], message=item["msg"])
        for item in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(map(str, f.loc))}: {f.message}" for f in fields)
    return ApiError(422, message or "invalid request", fields=fields)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into an :class:`ErrorBody`."""

    async def api_error(_request: Request, exc: Any) -> JSONResponse:
        return _render(exc)

    async def pipeq_error(_request: Request, exc: Any) -> JSONResponse:
        return _render(from_pipeq(exc))

    async def validation_error(_request: Request, exc: Any) -> JSONResponse:
        return _render(_from_validation(exc))

    async def http_error(_request: Request, exc: Any) -> JSONResponse:
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(status).phrase
        return _render(ApiError(status, message, headers=exc.headers))

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _render(ApiError(500, "internal error", type="internal_error"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(PipeqError, pipeq_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
