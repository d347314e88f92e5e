"""``pipeq beat`` (the scheduler; exactly one active per database) and ``pipeq workers``."""

from __future__ import annotations

import json
import sys

import click

from services.cli.output import table
from shared.db.models import utcnow


@click.command()
@click.option(
    "--wait/--no-wait",
    default=None,
    help="If another beat is active: stand by until it goes, or exit 1 at once "
    "(default: stand by, but not with --once).",
)
@click.option("--once", is_flag=True, help="Run one tick (due runs and housekeeping), then exit.")
def beat(wait: bool | None, once: bool) -> None:
    """Run user schedules and housekeeping until SIGTERM (broker and database; no torch)."""
    from services.beat.main import run

    sys.exit(run(wait=not once if wait is None else wait, once=once))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def workers(as_json: bool) -> None:
    """Workers that answered beat's pings, the most recently seen first."""
    from shared.db import housekeeping
    from shared.db.engine import session_scope

    with session_scope() as session:
        found = [
            (worker.name, worker.first_seen_at, worker.last_seen_at)
            for worker in housekeeping.known_workers(session)
        ]
    now = utcnow()
    if as_json:
        for name, first, last in found:
            record = {
                "name": name,
                "first_seen_at": first.isoformat(),
                "last_seen_at": last.isoformat(),
            }
            click.echo(json.dumps(record))
        return
    rows = [
        [name, last.isoformat(timespec="seconds"), f"{(now - last).total_seconds():.0f} s ago"]
        for name, _first, last in found
    ]
    click.echo(table(rows, ["worker", "last seen", "age"]))


def register(cli: click.Group) -> None:
    cli.add_command(beat)
    cli.add_command(workers)
