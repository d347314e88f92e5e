"""Running alembic from code: what ``pipeq db upgrade`` and the tests call."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from shared.db.engine import get_engine
from shared.errors import translating
from shared.settings import get_settings


def alembic_config(url: str | None = None) -> Config:
    folder = Path(migrations.__file__).parent
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", url or get_settings().resolved_database_url)
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
    with (
        translating("reading the schema version"),
        get_engine(config.get_main_option("sqlalchemy.url")).connect() as connection,
    ):
        applied = set(MigrationContext.configure(connection).get_current_heads())
    return applied, heads
