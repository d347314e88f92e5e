"""``pipeq worker``: one process per (queues, device)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

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
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes on this device under this one command, each loading its own "
    "models (on a CPU host, one per core: README, 'Several processes on one device').",
)
@click.option(
    "--torch-threads",
    type=click.IntRange(1, 1024),
    default=None,
    help="Torch's threads for one operation in each process (default: a thread per core "
    "for one process; cores / N for N processes).",
)
@click.option("--process-number", type=int, default=None, hidden=True)
@click.option("--lone-threads", type=int, default=None, hidden=True)
@click.option("--group-file", type=click.Path(path_type=Path), default=None, hidden=True)
@click.option("--cores", "own_cores", default=None, hidden=True)
def worker(
    queues: tuple[str, ...],
    device: str,
    concurrency: int | None,
    prefetch_multiplier: int,
    name: str | None,
    memory_budget: str | None,
    metrics_port: int | None,
    processes: int,
    torch_threads: int | None,
    process_number: int | None,
    lone_threads: int | None,
    group_file: Path | None,
    own_cores: str | None,
) -> None:
    """Load the models of QUEUES once, then serve their jobs until SIGTERM."""
    from services.worker.affinity import parse as parse_cores
    from services.worker.device import pin_device, pin_threads
    from shared.settings import parse_bytes

    budget = parse_bytes(memory_budget, what="--memory-budget") if memory_budget else None
    queues = tuple(dict.fromkeys(queues))
    if processes > 1:
        sys.exit(_several(processes, queues, device, torch_threads, name, metrics_port))

    placement = pin_device(device)  # before anything imports torch
    pin_threads(torch_threads)
    from services.worker.main import run

    sys.exit(
        run(
            queues=queues,
            placement=placement,
            concurrency=concurrency,
            prefetch_multiplier=prefetch_multiplier,
            name=name,
            memory_budget=budget,
            metrics_port=metrics_port,
            torch_threads=torch_threads,
            lone_threads=lone_threads,
            group_file=group_file,
            cores=parse_cores(own_cores) if own_cores else None,
            process=None if process_number is None else str(process_number),
        )
    )


def _several(
    processes: int,
    queues: tuple[str, ...],
    device: str,
    torch_threads: int | None,
    name: str | None,
    metrics_port: int | None,
) -> int:
    """Start ``processes`` children (``services/worker/processes.py``): this command's own
    arguments, each with its number, name, torch threads and metrics port."""
    from services.worker.affinity import group_shares
    from services.worker.device import numbered, parse_device, worker_name
    from services.worker.processes import Processes, cores, threads_each
    from services.worker.threads import Peers
    from shared.logs import configure_logging
    from shared.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, as_json=settings.log_json)
    placement = parse_device(device)
    base = name or worker_name(queues, placement)
    threads = torch_threads or threads_each(processes)
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port and port + processes - 1 > 65535:
        raise click.BadParameter(
            f"{port} + {processes - 1} is past the last port, 65535", param_hint="--metrics-port"
        )
    shared = _passed_on(("--processes", "--torch-threads", "--name", "--metrics-port"))
    lone: list[str] = []
    group = None
    if torch_threads is None:  # a share this command chose: a lone pass may take all cores
        # The children's jobs in hand (threads.py), in memory where the host has a tmpfs.
        handle, path = tempfile.mkstemp(
            prefix="pipeq-worker-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        os.close(handle)
        group = Path(path)
        Peers.create(group, processes)
        lone = ["--lone-threads", str(cores()), "--group-file", str(group)]
    # Each child's Python threads on cores of its own (affinity.py); measured on CPUs only.
    pinned = group_shares(processes) if not placement.gpus else None
    commands = []
    for number in range(1, processes + 1):
        own = ["--processes", "1", "--torch-threads", str(threads), *lone]
        own += ["--name", numbered(base, number), "--process-number", str(number)]
        if pinned:
            own += ["--cores", ",".join(map(str, pinned[number - 1]))]
        if port is not None:
            own += ["--metrics-port", str(port + number - 1 if port else 0)]
        commands.append([sys.executable, "-m", "services.cli", "worker", *shared, *own])
    try:
        return Processes(commands).run()
    finally:
        if group is not None:
            group.unlink(missing_ok=True)


def _passed_on(own: tuple[str, ...]) -> list[str]:
    """This command's arguments as given, less the options each child gets its own value of."""
    context = click.get_current_context()
    args: list[str] = []
    for param in context.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if any(flag in own for flag in param.opts) or param.hidden:
            continue
        value = context.params[param.name]
        if value is None:
            continue
        for item in value if param.multiple else (value,):
            args += [param.opts[0], str(item)]
    return args


def register(cli: click.Group) -> None:
    cli.add_command(worker)
