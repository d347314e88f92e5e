"""Unit tier: no servers. Databases here are real SQLite files, migrated by alembic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class TaskRunner:
    """Each task's handler on its tiny model, loaded once; runs a job's steps in process.

    Loading holds a lock: transformers 5's ``from_pretrained`` patches module
    globals while it runs, and two loads in parallel threads can leave them
    patched (later models then load with weights left on the meta device).
    """

    def __init__(self, registry: Path) -> None:
        from shared.registry import load_registry

        self.registry = load_registry(registry)
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def spec(self, task: str, alias: str | None = None) -> Any:
        """The task's ``tiny-<task>`` model, or another tiny model of that task by alias."""
        return self.registry.get(alias or f"tiny-{task}")

    def loaded(self, task: str, alias: str | None = None) -> Any:
        from services.worker.handlers import handler_for

        spec = self.spec(task, alias)
        with self._lock:
            if spec.alias not in self._loaded:
                self._loaded[spec.alias] = handler_for(task).load(spec, "cpu")
            return self._loaded[spec.alias]

    def effective(
        self, task: str, params: dict[str, Any], alias: str | None = None
    ) -> dict[str, Any]:
        """The job's parameters over the registry's defaults, as the worker applies them."""
        return {**self.spec(task, alias).defaults, **params}

    def model_dir(self, task: str, alias: str | None = None) -> str:
        return str(self.spec(task, alias).location)

    def __call__(
        self,
        task: str,
        inputs: Any,
        params: dict[str, Any] | None = None,
        *,
        alias: str | None = None,
    ) -> Any:
        """params -> decode -> predict -> encode, as the runner calls them."""
        from services.worker.handlers import handler_for

        handler = handler_for(task)
        checked = handler.params(self.spec(task, alias), params or {})
        items, batched = handler.decode(inputs, checked)
        outputs = handler.predict(self.loaded(task, alias), items, checked)
        return handler.encode(outputs, checked, batched)


@pytest.fixture(scope="session")
def run_task(tiny_registry: Path) -> TaskRunner:
    return TaskRunner(tiny_registry)
