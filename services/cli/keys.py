"""``pipeq keys``: the gateway's tenants and API keys (operators only: it needs the database)."""

from __future__ import annotations

import json

import click

from services.cli.output import table
from shared.db import keys
from shared.db.engine import session_scope


@click.group(name="keys")
def keys_group() -> None:
    """API keys of the HTTP gateway; each belongs to a tenant."""


@keys_group.command()
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def create(tenant: str, as_json: bool) -> None:
    """Make a key for TENANT (created if new). The key is shown now and never again."""
    try:
        keys.check_tenant(tenant)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TENANT") from None
    with session_scope() as session:
        made = keys.create_key(session, tenant)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": made.id,
                    "tenant": made.tenant,
                    "key": made.key,
                    "webhook_secret": made.webhook_secret,
                }
            )
        )
        return
    click.echo(f"key id          {made.id}")
    click.echo(f"tenant          {made.tenant}")
    click.echo(f"key             {made.key}")
    click.echo(f"webhook secret  {made.webhook_secret}")
    click.echo("Store the key now: only its hash is kept. Revoke with `pipeq keys revoke ID`.")


@keys_group.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (gateways stop taking it within PIPEQ_KEY_CACHE_SECONDS)."""
    with session_scope() as session:
        done = keys.revoke(session, key_id)
    if not done:
        raise click.ClickException(f"no active key {key_id!r}")
    click.echo(f"revoked {key_id}")


@keys_group.command(name="list")
@click.argument("tenant", required=False)
def list_keys(tenant: str | None) -> None:
    """List keys (ids, tenants, dates; never the keys)."""
    with session_scope() as session:
        rows = [
            [
                row.id,
                row.tenant,
                row.created_at.isoformat(timespec="seconds"),
                row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
            ]
            for row in keys.list_keys(session, tenant)
        ]
    click.echo(table(rows, ["id", "tenant", "created", "revoked"]))


@keys_group.command()
@click.argument("tenant")
@click.option("--rotate", is_flag=True, help="Make a new secret; later webhooks use it.")
def secret(tenant: str, rotate: bool) -> None:
    """Print TENANT's webhook signing secret."""
    with session_scope() as session:
        value = (keys.rotate_secret if rotate else keys.webhook_secret)(session, tenant)
    if value is None:
        raise click.ClickException(f"no tenant {tenant!r}")
    click.echo(value)


def register(cli: click.Group) -> None:
    cli.add_command(keys_group)
