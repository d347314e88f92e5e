"""The real JobRunner on a fake model (``tests.faults``), for the runner's unit tests.

``fake_runner`` builds one with its supervisor; the helpers read back what it wrote.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.worker.runner import JobRunner
from services.worker.supervisor import Supervisor
from shared import attempts
from shared.db import repo
from shared.db.engine import session_scope
from shared.errors import UnsupportedTask
from shared.jobs import JobView
from shared.settings import Settings
from tests.faults import EchoHandler, FakeModels, FaultyHandler


def fake_handlers(task: str) -> FaultyHandler:
    if task != EchoHandler.task:
        raise UnsupportedTask(f"task {task!r} has no handler in this worker")
    return FaultyHandler(EchoHandler())


@contextlib.contextmanager
def fake_runner(
    db_url: str, home: Path, *, handlers: Any = fake_handlers, **settings: Any
) -> Iterator[JobRunner]:
    """A runner with quick heartbeats, ``settings`` on top, and its supervisor running."""
    config = Settings(database_url=db_url, home=home, **{"heartbeat_seconds": 0.05, **settings})
    supervisor = Supervisor(
        db_url=db_url, heartbeat_seconds=config.heartbeat_seconds, poll_seconds=0.05
    ).start()
    try:
        yield JobRunner(
            FakeModels(),
            worker="unit",
            settings=config,
            db_retry_seconds=1,
            handlers=handlers,
            supervisor=supervisor,
            release_memory=lambda: None,
        )
    finally:
        supervisor.close()


def message(inputs: Any, **fields: Any) -> dict[str, Any]:
    """A job message for the fake model."""
    return {
        "id": str(uuid.uuid4()),
        "task": "text-classification",
        "model": "echo",
        "inputs": inputs,
        **fields,
    }


def row(runner: JobRunner, job_id: str) -> JobView:
    with session_scope(runner.db_url) as session:
        view = repo.get_view(session, job_id)
    assert view is not None
    return view


def endings(runner: JobRunner, job_id: str) -> list[str | None]:
    with session_scope(runner.db_url) as session:
        return [a.outcome for a in attempts.of_job(session, job_id)]


def in_thread(runner: JobRunner, job: dict[str, Any]) -> tuple[threading.Thread, list[str]]:
    """Run ``job`` in a thread of its own; its final state lands in the list."""
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(runner.run(job, fallback_id="x")))
    thread.start()
    return thread, out
