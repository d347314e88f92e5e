"""``pipeq models``: the registry and its models."""

from __future__ import annotations

import os
from pathlib import Path

import click

from shared.logs import configure_logging


@click.group()
def models() -> None:
    """Registered models."""


@models.command(name="build-tiny")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", "tasks", multiple=True, help="Only these tasks (default: all).")
def build_tiny(folder: Path, tasks: tuple[str, ...]) -> None:
    """Build a tiny random model for every task in FOLDER, with a registry file."""
    configure_logging("INFO")
    from services.worker.main import QUIET_ENVIRONMENT

    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from services.worker.tiny import build_all

    registry = build_all(folder, tasks=list(tasks) or None)
    click.echo(f"wrote {registry}; use it with PIPEQ_MODELS={registry}")


def register(cli: click.Group) -> None:
    cli.add_command(models)
