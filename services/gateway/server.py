"""Running the gateway: uvicorn with the app factory, one or several worker processes."""

from __future__ import annotations

import os
import tempfile

import uvicorn


def serve(*, host: str, port: int, workers: int, log_level: str, access_log: bool) -> None:
    """Serve until SIGTERM/SIGINT. Several workers share the port and the metrics folder."""
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pipeq-metrics-")
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.lower(),
        access_log=access_log,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
