"""The FastAPI application: :func:`create_app` builds one per gateway process.

``uvicorn`` calls it as a factory (``services.gateway.app:create_app``), in each
worker process, so settings are read there, from ``PIPEQ_*``, never at import.
The lifespan starts the webhook dispatcher (unless ``PIPEQ_WEBHOOKS=false``)
and opens the broker connection before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.gateway import errors, events, health, routes
from services.gateway.metrics import MetricsMiddleware
from services.gateway.service import Gateway
from services.gateway.webhooks import Dispatcher
from shared.logs import configure_logging
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
pipeq over HTTP: queue Hugging Face model jobs, follow them, cancel them.

Every `/v1` route takes `Authorization: Bearer <key>` (`pipeq keys create TENANT`).
A tenant sees only its own jobs. Job bodies are pipeq's job messages.
"""


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    gateway: Gateway = app.state.gateway
    await asyncio.to_thread(lambda: gateway.client.app)  # build the Celery app once, here
    dispatcher = Dispatcher(gateway.settings) if gateway.settings.webhooks else None
    task = asyncio.create_task(dispatcher.run()) if dispatcher else None
    try:
        yield
    finally:
        if task is not None and dispatcher is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.aclose()


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    """The gateway app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_level, as_json=settings.log_json)
    app = FastAPI(
        title="pipeq gateway",
        description=DESCRIPTION,
        version="1",
        lifespan=_lifespan,
    )
    app.state.gateway = Gateway(settings)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(events.router)
    app.include_router(health.router)
    app.add_middleware(MetricsMiddleware)
    return app
