"""``pipeq worker``: one process per (queues, device)."""

from __future__ import annotations

import sys

import click

from shared.queues import WORK_QUEUES


@click.command()
@click.option(
    "--queue",
    "-Q",
    "queues",
    multiple=True,
    required=True,
    type=click.Choice(WORK_QUEUES),
    help="A queue to serve; repeat for several.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, or cuda:N (the worker then sees that GPU alone).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=None,
    help="Jobs in flight at once (threads sharing the loaded models); default: twice the "
    "largest batch of the models served (so one batch forms while one runs), at least 4.",
)
@click.option("--prefetch-multiplier", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--name", default=None, help="Worker name (default: queues-device@host).")
@click.option(
    "--memory-budget",
    default=None,
    help="Bytes of model tensors this worker keeps loaded, e.g. 2GiB (default: "
    "PIPEQ_MEMORY_BUDGET, else no limit); the least recently used idle model is evicted.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (0: any free one; default: PIPEQ_METRICS_PORT, "
    "else none). Each worker on a host needs its own.",
)
def worker(
    queues: tuple[str, ...],
    device: str,
    concurrency: int | None,
    prefetch_multiplier: int,
    name: str | None,
    memory_budget: str | None,
    metrics_port: int | None,
) -> None:
    """Load the models of QUEUES once, then serve their jobs until SIGTERM."""
    from services.worker.device import pin_device
    from shared.settings import parse_bytes

    budget = parse_bytes(memory_budget, what="--memory-budget") if memory_budget else None

    placement = pin_device(device)  # before anything imports torch
    from services.worker.main import run

    queues = tuple(dict.fromkeys(queues))
    sys.exit(
        run(
            queues=queues,
            placement=placement,
            concurrency=concurrency,
            prefetch_multiplier=prefetch_multiplier,
            name=name,
            memory_budget=budget,
            metrics_port=metrics_port,
        )
    )


def register(cli: click.Group) -> None:
    cli.add_command(worker)
