"""Running alembic from code: what ``pipeq db upgrade`` and the tests call."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from shared.db.engine import get_engine
from shared.errors import UPGRADE_HINT, SchemaMissing, translating
from shared.settings import get_settings


def alembic_config(url: str | None = None) -> Config:
    folder = Path(migrations.__file__).parent
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    # The ini file's options interpolate '%(name)s': a URL-encoded password's '%' is doubled.
    url = url or get_settings().resolved_database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Bring the database at ``url`` (default: the settings') up to ``revision``."""
    with translating("migrating the database"):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    with translating("migrating the database"):
        command.downgrade(alembic_config(url), revision)


def status(url: str | None = None) -> tuple[set[str], set[str]]:
    """(revisions applied, head revisions in ``migrations/``)."""
    config = alembic_config(url)
    heads = set(ScriptDirectory.from_config(config).get_heads())
    return _applied(config), heads


def check_current(url: str | None = None) -> None:
    """Refuse a database without pipeq's tables, or one behind this code's migrations, with
    :class:`SchemaMissing`; one a newer pipeq migrated further passes."""
    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    applied = _applied(config)
    if not applied:
        raise SchemaMissing(f"the database has no pipeq tables; {UPGRADE_HINT}")
    known = {revision.revision for revision in script.walk_revisions()}
    if behind := (applied & known) - heads:
        raise SchemaMissing(
            f"the database is at migration {', '.join(sorted(behind))} and this pipeq needs "
            f"{', '.join(sorted(heads))}; {UPGRADE_HINT}"
        )


def _applied(config: Config) -> set[str]:
    with (
        translating("reading the schema version"),
        get_engine(config.get_main_option("sqlalchemy.url")).connect() as connection,
    ):
        return set(MigrationContext.configure(connection).get_current_heads())
