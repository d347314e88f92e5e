"""``pipeq db``: the schema, through alembic only."""

from __future__ import annotations

import click

from shared.settings import get_settings, redact_url


@click.group()
def db() -> None:
    """Database migrations (alembic, migrations/)."""


@db.command()
@click.option("--revision", default="heads", show_default=True)
def upgrade(revision: str) -> None:
    """Create or update the schema."""
    from shared.db import migrate

    migrate.upgrade(revision=revision)
    click.echo(f"database {redact_url(get_settings().resolved_database_url)} is at {revision}")


@db.command()
def current() -> None:
    """Show the applied revisions and the latest ones."""
    from shared.db import migrate

    applied, heads = migrate.status()
    click.echo(f"applied: {', '.join(sorted(applied)) or 'none'}")
    click.echo(f"latest:  {', '.join(sorted(heads))}")
    if applied != heads:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(db)
