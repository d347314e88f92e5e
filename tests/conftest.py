"""Shared fixtures: tiers marked by folder, tiny models built once per session.

Tiers: ``tests/unit`` (no servers), ``tests/integration`` (real RabbitMQ,
PostgreSQL and worker processes), ``tests/e2e`` (the CLI as a user drives it),
``tests/chaos`` (private servers killed and restarted under load).
Run one tier with ``pytest tests/unit`` or ``-m unit``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

TIERS = ("unit", "integration", "e2e", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny model, built once per test session; returns the registry file."""
    from services.worker.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded PIPEQ_HOME (SQLite + filesystem broker) for one test."""
    from shared.db.engine import reset_engines
    from shared.settings import get_settings

    for key in list(os.environ):
        if key.startswith("PIPEQ_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPEQ_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    reset_engines()
    yield tmp_path / "home"
    get_settings.cache_clear()
    reset_engines()
