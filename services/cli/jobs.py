"""Producer commands: ``submit``, ``status``, ``jobs``, ``cancel``."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from services.cli.output import echo_job, job_json, jobs_table
from services.cli.progress import follow as follow_job
from shared.client import Client
from shared.jobs import JobView
from shared.queues import NLP, ROUTES, queue_for
from shared.states import State


def _json_option(value: str | None, what: str) -> Any:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {value[1:]}: {exc.strerror}", param_hint=what
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None


def _file_input(task: str, path: Path) -> Any:
    """A text file for text tasks; any other file goes as ``{"base64": ...}``."""
    data = path.read_bytes()
    if queue_for(task) == NLP:
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="--file") from None
    return {"base64": base64.b64encode(data).decode(), "filename": path.name}


F = TypeVar("F", bound=Callable[..., Any])


def job_fields(file_help: str) -> Callable[[F], F]:
    """The options that describe a job (``submit``, ``schedule add``): --model, --text,
    --input, --file, --params, --priority. ``job_inputs`` reads them back."""

    def decorate(command: F) -> F:
        options = [
            click.option("--model", "-m", required=True, help="A model alias from the registry."),
            click.option(
                "--text", "-t", "texts", multiple=True, help="Input text; repeat for a batch."
            ),
            click.option("--input", "input_json", help="Inputs as JSON (or @file.json)."),
            click.option(
                "--file",
                "file_path",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help=file_help,
            ),
            click.option(
                "--params", "params_json", help="Parameters as a JSON object (or @file.json)."
            ),
            click.option("--priority", type=click.IntRange(0, 9), default=0),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def job_inputs(
    task: str,
    texts: tuple[str, ...],
    input_json: str | None,
    file_path: Path | None,
    params_json: str | None,
) -> tuple[Any, dict[str, Any]]:
    """A job's inputs and parameters from the options of :func:`job_fields`."""
    if sum([bool(texts), input_json is not None, file_path is not None]) != 1:
        raise click.UsageError("give exactly one of --text, --input or --file")
    inputs: Any
    if texts:
        inputs = texts[0] if len(texts) == 1 else list(texts)
    elif file_path is not None:
        inputs = _file_input(task, file_path)
    else:
        inputs = _json_option(input_json, "--input")
    params = _json_option(params_json, "--params") or {}
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    return inputs, params


def _show(job: JobView, as_json: bool) -> None:
    if as_json:
        click.echo(job_json(job))
    else:
        echo_job(job)


TIMED_OUT = 3  # submit --wait --timeout: the job had not ended (1: it failed, 2: refused)


def _exit_for(job: JobView) -> None:
    if job.state in (State.FAILED, State.CANCELLED):
        sys.exit(1)


@click.command()
@click.argument("task")
@job_fields("Inputs from a file: text for text tasks, else sent as base64.")
@click.option("--idempotency-key", help="Submitting the same key again returns the same job.")
@click.option("--wait", is_flag=True, help="Wait until the job ends; exit 1 if it failed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait at most (implies --wait); exit 3 if the job is still going (it goes on).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as one JSON object.")
def submit(
    task: str,
    model: str,
    texts: tuple[str, ...],
    input_json: str | None,
    file_path: Path | None,
    params_json: str | None,
    priority: int,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a TASK job to the model --model, with one of --text, --input or --file."""
    inputs, params = job_inputs(task, texts, input_json, file_path, params_json)
    client = Client()
    job = client.submit(
        task, model, inputs, params, priority=priority, idempotency_key=idempotency_key
    )
    wait = wait or timeout is not None
    if wait:
        try:
            job = client.wait(job.id, timeout=timeout)
        except (TimeoutError, KeyboardInterrupt) as stopped:
            job = client.get(job.id)
            _show(job, as_json)
            why = "on Ctrl-C" if isinstance(stopped, KeyboardInterrupt) else f"after {timeout:g} s"
            click.echo(
                f"error: job {job.id} is still {job.state} {why}; it goes on "
                f"(`pipeq status {job.id[:8]}`, or `pipeq cancel {job.id[:8]}`)",
                err=True,
            )
            sys.exit(130 if isinstance(stopped, KeyboardInterrupt) else TIMED_OUT)
    _show(job, as_json)
    if wait:
        _exit_for(job)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as one JSON object.")
@click.option("--follow", "-f", is_flag=True, help="Show progress until the job ends.")
@click.option("--interval", type=float, default=1.0, help="Seconds between reads (--follow).")
def status(job_id: str, as_json: bool, follow: bool, interval: float) -> None:
    """Show a job (a unique prefix of its id will do); --follow shows its progress as it runs."""
    client = Client()
    full_id = client.resolve(job_id)
    if follow:
        follow_job(lambda: client.get(full_id), interval=interval)
    _show(client.get(full_id), as_json)


@click.command(name="jobs")
@click.option("--state", type=click.Choice([s.value for s in State], case_sensitive=False))
@click.option("--task", type=click.Choice(sorted(ROUTES)), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_jobs(state: str | None, task: str | None, limit: int, as_json: bool) -> None:
    """List the newest jobs."""
    found = Client().list(state=State(state.upper()) if state else None, task=task, limit=limit)
    if as_json:
        for job in found:
            click.echo(job_json(job))
    else:
        click.echo(jobs_table(found))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one at its next check."""
    client = Client()
    full_id = client.resolve(job_id)
    before = client.get(full_id).state
    job = client.cancel(full_id)
    _show(job, as_json)
    if State(before).terminal:
        click.echo(f"note: job {job.id} had already ended ({before}); nothing to cancel", err=True)


def register(cli: click.Group) -> None:
    for command in (submit, status, list_jobs, cancel):
        cli.add_command(command)
