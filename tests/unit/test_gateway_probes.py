"""Readiness names what is down: the app in process, a real SQLite database, no broker there."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from services.gateway.app import create_app
from shared.settings import Settings


def test_readyz_is_503_and_names_the_broker_when_it_is_unreachable(
    tmp_path: Path, db_url: str
) -> None:
    settings = Settings(
        home=tmp_path, database_url=db_url, broker_url="amqp://guest:guest@127.0.0.1:1//"
    )
    app = create_app(settings, configure_logs=False)

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/healthz"), await client.get("/readyz")

    started = time.monotonic()
    health, ready = asyncio.run(probe())
    assert health.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("unreachable (amqp://guest:***@127.0.0.1:1//)")
    assert time.monotonic() - started < 20  # a probe answers, it does not hang
