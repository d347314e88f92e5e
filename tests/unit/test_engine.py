"""Engines: one per database and ping choice; SQLite has nothing to ping, so one engine."""

from __future__ import annotations

from pathlib import Path

from shared.db.engine import get_engine, reset_engines


def test_a_sqlite_file_has_one_engine_and_postgresql_one_per_ping_choice(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'one.db'}"
    postgres = "postgresql+psycopg://pipeq@127.0.0.1:5432/nowhere"  # engines connect lazily
    try:
        assert get_engine(sqlite) is get_engine(sqlite, ping=False)
        pinged, unpinged = get_engine(postgres), get_engine(postgres, ping=False)
        assert pinged is not unpinged and pinged is get_engine(postgres, ping=True)
        assert (pinged.pool._pre_ping, unpinged.pool._pre_ping) == (True, False)
    finally:
        reset_engines()
