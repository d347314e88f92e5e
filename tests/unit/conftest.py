"""Unit tier: no servers. Databases here are real SQLite files, migrated by alembic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from shared.db import migrate
from shared.db.engine import get_engine, reset_engines


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    migrate.upgrade(url)
    yield url
    reset_engines()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with Session(get_engine(db_url)) as session:
        yield session
