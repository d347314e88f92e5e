"""``pipeq``: the command line for users and operators.

Each command group lives in its own module and is added below. Commands import
their heavy parts (torch, the worker) inside the command, so ``pipeq submit``
and ``pipeq status`` start fast and work without torch installed.
"""

from __future__ import annotations

import sys

import click

from services.cli import beat, db, demo, gateway, jobs, keys, models, schedule, worker
from shared.errors import (
    ConfigError,
    InvalidJob,
    InvalidSchedule,
    JobError,
    PipeqError,
    SchemaMissing,
    TransientError,
)
from shared.settings import get_settings, redact_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipeq")
def cli() -> None:
    """pipeq: Hugging Face models as an asynchronous job service."""


for module in (jobs, worker, gateway, keys, db, models, demo, schedule, beat):
    module.register(cli)


def main() -> None:
    """Entry point: pipeq's own errors print as one line, not a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # with the usage line and click's "Error:"
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # a command's own: one line, as pipeq's errors are
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except SchemaMissing as exc:  # which database: a wrong PIPEQ_HOME is a common cause
        where = redact_url(get_settings().resolved_database_url)
        click.echo(f"error: {exc} ({where})", err=True)
        sys.exit(2)
    except (InvalidJob, JobError, ConfigError, InvalidSchedule) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (TransientError, PipeqError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
