"""Probes and metrics, without an API key: expose them to the cluster, not the world.

``/healthz`` says the process serves HTTP (liveness); ``/readyz`` that it can
reach the database and the broker (readiness: a load balancer stops sending
jobs to a gateway that could not queue them); ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from services.gateway import metrics
from services.gateway.routes import gateway
from services.gateway.schemas import Health
from services.gateway.service import Gateway
from shared.celery_app import reached
from shared.db.engine import session_scope
from shared.settings import redact_url

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


def _check_database(url: str) -> str:
    try:
        with session_scope(url) as session:
            session.execute(text("select 1"))
    except Exception as exc:
        return f"unreachable: {exc}"
    return "ok"


def _check_broker(gw: Gateway) -> str:
    try:
        with reached(gw.client.app, "broker", connect_timeout=3):
            pass
    except Exception as exc:
        return f"unreachable ({redact_url(gw.settings.resolved_broker_url)}): {exc}"
    return "ok"


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> Response:
    gw = gateway(request)
    checks = {
        "database": await run_in_threadpool(_check_database, gw.db_url),
        "broker": await run_in_threadpool(_check_broker, gw),
    }
    ready = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def prometheus(request: Request) -> Response:
    backlog = gateway(request).backlog  # reads the database: off the event loop
    payload, content_type = await run_in_threadpool(metrics.exposition, backlog)
    return Response(payload, media_type=content_type)
