"""``pipeq demo``: the whole service on the embedded default, in one command.

Builds the tiny models, migrates the SQLite database, starts a worker process
in the background, submits a job per sample input (and two bad ones) from this
separate process, prints their states and results, and shuts the worker down.
No server is needed: the broker is kombu's filesystem transport under PIPEQ_HOME.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from shared.settings import get_settings, redact_url


def _jobs(samples: dict[str, list[Any]]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    jobs: list[tuple[str, str, Any, dict[str, Any]]] = []
    for task, inputs in samples.items():
        jobs.extend((task, f"tiny-{task}", sample, {}) for sample in inputs)
    # Some that must fail, clearly, without stopping the others.
    jobs.append(("text-classification", "no-such-model", "hello", {}))
    jobs.append(("text-classification", "tiny-text-classification", "hello", {"top_k": -1}))
    broken = {"base64": "bm90IGFuIGltYWdl", "filename": "broken.png"}
    jobs.append(("image-classification", "tiny-image-classification", broken, {}))
    jobs.append(("question-answering", "tiny-question-answering", {"question": "Who?"}, {}))
    return jobs


@click.command()
@click.option("--timeout", type=float, default=300, show_default=True)
def demo(timeout: float) -> None:
    """Run pipeq end to end on the embedded default (no servers), or on the servers that
    PIPEQ_BROKER_URL and PIPEQ_DATABASE_URL name."""
    settings = get_settings()
    home = settings.home.resolve()
    models_dir = home / "models"
    click.echo(  # on the embedded default, or on the services PIPEQ_* names
        f"pipeq demo in {home} (broker {redact_url(settings.resolved_broker_url)}, "
        f"database {redact_url(settings.resolved_database_url)})"
    )

    env = dict(os.environ, PIPEQ_HOME=str(home), PIPEQ_MODELS=str(models_dir / "models.toml"))
    pipeq = [sys.executable, "-m", "services.cli"]
    started = time.perf_counter()
    subprocess.run([*pipeq, "models", "build-tiny", str(models_dir)], env=env, check=True)
    subprocess.run([*pipeq, "db", "upgrade"], env=env, check=True)
    os.environ.update(PIPEQ_HOME=str(home), PIPEQ_MODELS=env["PIPEQ_MODELS"])
    get_settings.cache_clear()

    from services.cli.output import jobs_table
    from services.worker.tiny import samples
    from shared.client import Client
    from shared.errors import PipeqError

    log_path = home / "demo-worker.log"
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(
            [
                *pipeq,
                "worker",
                "--queue",
                "nlp",
                "--queue",
                "vision",
                "--queue",
                "audio",
                "--device",
                "cpu",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    click.echo(f"worker started (pid {worker.pid}, log {log_path})")
    try:
        client = Client()
        ids = []
        for task, model, inputs, params in _jobs(samples()):
            try:
                ids.append(client.submit(task, model, inputs, params).id)
            except PipeqError as exc:
                click.echo(f"refused at submit: {task} on {model}: {exc}")
        for job_id in ids:
            client.wait(job_id, timeout=timeout)
        click.echo(jobs_table([client.get(job_id) for job_id in ids]))
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        click.echo(f"worker stopped (exit {code}); demo took {time.perf_counter() - started:.1f} s")


def register(cli: click.Group) -> None:
    cli.add_command(demo)
