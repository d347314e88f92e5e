"""The schema is made by migrations only, and they agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import migrate
from shared.db.engine import get_engine
from shared.db.models import Base


def test_models_and_migrations_agree(db_url: str) -> None:
    with get_engine(db_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_is_at_head_and_downgrade_empties(db_url: str) -> None:
    applied, heads = migrate.status(db_url)
    assert applied == heads and heads
    migrate.downgrade(db_url, "base")
    with get_engine(db_url).connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == ()
    migrate.upgrade(db_url)
    assert migrate.status(db_url)[0] == heads
