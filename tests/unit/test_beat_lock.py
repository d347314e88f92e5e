"""One active beat per database: the lock file used with SQLite, and which lock a URL gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.beat.lock import AdvisoryLock, FileLock, lock_for


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "db.beat-lock"), FileLock(tmp_path / "db.beat-lock")
    assert first.acquire() and first.held()
    assert not second.acquire() and not second.held()
    first.release()
    assert not first.held()
    assert second.acquire()
    second.release()


def test_a_dead_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.beat-lock"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from services.beat.lock import FileLock;"
            f"assert FileLock(Path({str(path)!r})).acquire(); print('held', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:  # closes its pipe on the way out
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert not FileLock(path).acquire()
        finally:
            holder.kill()
    assert FileLock(path).acquire()


def test_each_database_gets_its_own_kind_of_lock(tmp_path: Path) -> None:
    sqlite = lock_for(f"sqlite:///{tmp_path / 'pipeq.db'}")
    assert isinstance(sqlite, FileLock) and sqlite.path == tmp_path / "pipeq.db.beat-lock"
    assert isinstance(lock_for("postgresql+psycopg://u@127.0.0.1:1/x"), AdvisoryLock)
    with pytest.raises(ValueError, match="in-memory"):
        lock_for("sqlite://")
