"""How the CLI prints jobs: one JSON object with ``--json``, a readable block otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from services.cli.progress import progress_line
from shared.jobs import JobView


def job_json(job: JobView) -> str:
    return json.dumps(job.model_dump(mode="json"), ensure_ascii=False)


def compact(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def echo_job(job: JobView) -> None:
    click.echo(f"job      {job.id}")
    click.echo(f"state    {job.state}")
    click.echo(f"task     {job.task} on {job.model} (queue {job.queue})")
    click.echo(f"attempts {job.attempts}" + (f" on {job.worker}" if job.worker else ""))
    if job.created_at:
        click.echo(f"created  {job.created_at.isoformat(timespec='seconds')}")
    if job.started_at and job.finished_at:
        seconds = (job.finished_at - job.started_at).total_seconds()
        click.echo(f"ran      {seconds * 1000:.0f} ms")
    line = progress_line(job.progress) if job.state == "RUNNING" else None
    if line:
        click.echo(line)
    if job.cancel_requested:
        click.echo("cancel   requested; the worker stops the job at its next check")
    if job.error:
        click.echo(f"error    {job.error.type}: {job.error.message}")
    if job.result is not None:
        click.echo(
            "result   "
            + json.dumps(job.result, ensure_ascii=False, indent=2).replace("\n", "\n         ")
        )


def table(rows: Iterable[list[str]], headers: list[str]) -> str:
    rows = [headers, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def jobs_table(jobs: list[JobView]) -> str:
    rows = []
    for job in jobs:
        outcome = job.error.message if job.error else job.result
        rows.append(
            [
                job.id[:8],
                job.state,
                job.task,
                job.model,
                compact(outcome) if outcome is not None else "",
            ]
        )
    return table(rows, ["id", "state", "task", "model", "result / error"])
