"""``pipeq schedule``: recurring jobs, stored in the database and run by ``pipeq beat``.

Changes take effect at beat's next tick (within ``PIPEQ_BEAT_POLL_INTERVAL``);
beat needs no restart. Each run is an ordinary job: ``pipeq status`` shows it,
and ``pipeq schedule jobs NAME`` lists a schedule's jobs.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click

from services.cli.jobs import job_fields, job_inputs
from services.cli.output import job_json, jobs_table, table
from shared.cadence import Cadence
from shared.client import message_within
from shared.db import repo
from shared.db import schedules as schedules_repo
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.errors import InvalidSchedule
from shared.jobs import parse_job
from shared.schedules import (
    ScheduleView,
    add,
    find,
    list_all,
    pause,
    remove,
    resume,
    run_key,
)
from shared.settings import get_settings


@click.group()
def schedule() -> None:
    """Recurring jobs: by cron expression (UTC) or fixed interval."""


def _when(moment: Any) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _echo(view: ScheduleView, as_json: bool) -> None:
    if as_json:
        click.echo(view.model_dump_json())
        return
    state = "paused" if view.paused else f"next run {_when(view.next_run_at)}"
    click.echo(f"schedule {view.name}: {view.cadence}, {view.task} on {view.model}; {state}")


@schedule.command(name="add")
@click.argument("name")
@click.argument("task")
@click.option("--cron", help='Five-field cron expression in UTC, e.g. "0 3 * * *".')
@click.option("--every", help="Fixed interval, e.g. 90s, 10m, 1h30m, 7d.")
@job_fields("Inputs from a file, read now: text for text tasks, else sent as base64.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as one JSON object.")
def add_command(
    name: str,
    task: str,
    cron: str | None,
    every: str | None,
    model: str,
    texts: tuple[str, ...],
    input_json: str | None,
    file_path: Path | None,
    params_json: str | None,
    priority: int,
    as_json: bool,
) -> None:
    """Run a TASK job (the same fields as ``pipeq submit``) on a cadence, under NAME."""
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron or --every")
    inputs, params = job_inputs(task, texts, input_json, file_path, params_json)
    try:
        cadence = Cadence.parse(cron=cron, every=every)
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None
    job = parse_job(
        {"task": task, "model": model, "inputs": inputs, "params": params, "priority": priority}
    )
    # Checked as each run's message will be: with an id and the run's idempotency key.
    run = job.model_copy(update={"idempotency_key": run_key(str(uuid.uuid4()), utcnow())})
    message_within(run.with_id(), get_settings().max_message_bytes)
    with session_scope() as session:
        view = add(session, name=name, cadence=cadence, job=job, now=utcnow())
    _echo(view, as_json)


@schedule.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(as_json: bool) -> None:
    """Every schedule, by name."""
    with session_scope() as session:
        views = list_all(session)
    if as_json:
        for view in views:
            click.echo(view.model_dump_json())
        return
    rows = [
        [
            view.name,
            view.cadence,
            f"{view.task} on {view.model}",
            "paused" if view.paused else _when(view.next_run_at),
            _when(view.last_run_at),
            str(view.runs),
            (view.last_job_id or "-")[:8],
            view.last_error or "",
        ]
        for view in views
    ]
    headers = ["name", "cadence", "job", "next run", "last run", "runs", "last job", "last error"]
    click.echo(table(rows, headers))


@schedule.command(name="pause")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def pause_command(name: str, as_json: bool) -> None:
    """Stop a schedule's runs (its jobs already queued still run)."""
    with session_scope() as session:
        view = pause(session, name)
    _echo(view, as_json)


@schedule.command(name="resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def resume_command(name: str, as_json: bool) -> None:
    """Run a paused schedule again, from its next run after now (missed runs are skipped)."""
    with session_scope() as session:
        view = resume(session, name, now=utcnow())
    _echo(view, as_json)


@schedule.command(name="remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Delete a schedule; the jobs it made stay."""
    with session_scope() as session:
        remove(session, name)
    click.echo(f"schedule {name} removed")


@schedule.command(name="jobs")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def jobs_command(name: str, limit: int, as_json: bool) -> None:
    """The jobs a schedule made, newest first."""
    with session_scope() as session:
        rows = schedules_repo.jobs_of(session, find(session, name).id, limit=limit)
        views = [repo.to_view(row) for row in rows]
    if as_json:
        for view in views:
            click.echo(job_json(view))
    else:
        click.echo(jobs_table(views))


def register(cli: click.Group) -> None:
    cli.add_command(schedule)
