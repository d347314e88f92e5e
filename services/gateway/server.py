"""Running the gateway: uvicorn with the app factory, one or several worker processes."""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn


def serve(*, host: str, port: int, workers: int, log_level: str, access_log: bool) -> None:
    """Serve until SIGTERM/SIGINT. Several workers share the port and a metrics folder.

    With several workers and no ``PROMETHEUS_MULTIPROC_DIR`` given, a fresh
    folder is made for this run (prometheus_client wants it empty at start)
    and removed at exit.
    """
    made = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        made = tempfile.mkdtemp(prefix="pipeq-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
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
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
