"""The schema is made by migrations only, and they agree with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from shared.db import migrate
from shared.db.engine import get_engine
from shared.db.models import Base
from shared.errors import SchemaMissing, translating


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


def test_a_database_without_the_schema_or_behind_it_is_refused_naming_the_fix(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with pytest.raises(SchemaMissing, match=r"no pipeq tables; run `pipeq db upgrade`"):
        migrate.check_current(url)
    migrate.upgrade(url)
    migrate.check_current(url)
    migrate.downgrade(url, "-1")
    with pytest.raises(SchemaMissing, match=r"is at migration \w+ and this pipeq needs \w+"):
        migrate.check_current(url)


def test_a_statement_on_a_missing_table_says_to_migrate(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    missing = "^reading jobs: the database has no table 'jobs' .*; run `pipeq db upgrade`"
    with (
        pytest.raises(SchemaMissing, match=missing),
        translating("reading jobs"),
        engine.connect() as connection,
    ):
        connection.execute(text("select id from jobs"))


def test_a_url_with_a_percent_sign_reaches_alembic_unchanged(tmp_path: Path) -> None:
    # A URL-encoded password ('p%40ss' for 'p@ss') once broke alembic's ini interpolation
    # with an error quoting the whole URL, password and all.
    secret = "postgresql+psycopg://pipeq:p%40ss@db.example:5432/pipeq"
    assert migrate.alembic_config(secret).get_main_option("sqlalchemy.url") == secret
    folder = tmp_path / "100%"
    folder.mkdir()
    url = f"sqlite:///{folder / 'jobs.db'}"
    migrate.upgrade(url)
    applied, heads = migrate.status(url)
    assert applied == heads and heads
