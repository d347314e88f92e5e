"""``pipeq gateway``: the HTTP API (services/gateway), on uvicorn."""

from __future__ import annotations

import click

from shared.settings import get_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the port (each polls webhooks; claims keep them apart).",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def gateway(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the HTTP API: jobs, events, webhooks, /healthz, /readyz, /metrics, /docs."""
    from services.gateway.server import serve

    serve(
        host=host,
        port=port,
        workers=workers,
        log_level=get_settings().log_level,
        access_log=access_log,
    )


def register(cli: click.Group) -> None:
    cli.add_command(gateway)
