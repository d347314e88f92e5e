"""Beat's housekeeping: expired jobs and their artifacts, stale RUNNING jobs, workers seen.

All of it is database work (and file removal in the model store), run in
beat's own process: no Celery task, no worker, no torch.

- Finished jobs are deleted once older than their state's retention
  (``PIPEQ_RETAIN_SUCCEEDED`` / ``_FAILED`` / ``_CANCELLED``), with the artifacts
  their result or progress names (:mod:`shared.artifacts`), in batches. Artifacts go first,
  rows second: if beat stops in between, the next pass finds the rows again and
  the artifacts already gone, so nothing is left orphaned.
- RUNNING jobs whose heartbeat is older than ``PIPEQ_HEARTBEAT_TIMEOUT`` are
  handed to :func:`shared.stale.sweep_stale_jobs`.
- Workers that answer a Celery remote-control ping are recorded in the
  ``workers`` table (first and last seen); those silent past
  ``PIPEQ_RETAIN_WORKERS`` are forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.artifacts import Removal, artifacts_of, remove_artifact
from shared.db import housekeeping as repo
from shared.db.engine import session_scope
from shared.errors import translating
from shared.queues import TRAIN
from shared.settings import Settings
from shared.stale import requeue_stale_jobs, sweep_stale_jobs
from shared.states import State

log = logging.getLogger(__name__)

#: Names of the workers that answered a ping.
Pinger = Callable[[], list[str]]


@dataclass
class Purge:
    deleted: int = 0
    artifacts: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def retention(settings: Settings) -> dict[State, timedelta | None]:
    return {
        State.SUCCEEDED: settings.retain_succeeded,
        State.FAILED: settings.retain_failed,
        State.CANCELLED: settings.retain_cancelled,
    }


def purge_expired(settings: Settings, *, now: datetime, batch: int = 500) -> Purge:
    """Delete every finished job past its retention, and its artifact."""
    url = settings.resolved_database_url
    store = settings.resolved_model_store
    done = Purge()
    while True:
        with session_scope(url) as session:
            expired = repo.expired_jobs(
                session, retention=retention(settings), now=now, limit=batch
            )
        for job_id, result, progress in expired:
            for artifact in artifacts_of(result, progress):
                _remove(store, artifact, job_id=job_id, done=done)
        with session_scope(url) as session:
            done.deleted += repo.delete_finished(session, [job_id for job_id, _, _ in expired])
        if len(expired) < batch:
            return done


def _remove(store: Path, artifact: str, *, job_id: str, done: Purge) -> None:
    outcome = remove_artifact(store, artifact)
    if outcome is Removal.REMOVED:
        done.artifacts.append(store / artifact)
    elif outcome is Removal.REFUSED:
        done.refused.append(artifact)
        log.warning(
            "job %s: artifact %r is outside the model store %s; left in place",
            job_id,
            artifact,
            store,
            extra={"job_id": job_id},
        )


def sweep_stale(
    settings: Settings, *, now: datetime, publish: Callable[[dict[str, Any]], None] | None = None
) -> list[str]:
    """Fail RUNNING jobs not heard from within the heartbeat timeout.

    Training jobs are requeued instead (when ``publish`` is given): their message was
    acked once claimed (``services/worker/early_ack.py``), so this is how a job whose
    worker died comes back, to resume from its last checkpoint.
    """
    timeout = settings.heartbeat_timeout
    with session_scope(settings.resolved_database_url) as session:
        if publish is None:
            return sweep_stale_jobs(session, heartbeat_timeout=timeout, now=now)
        done = sweep_stale_jobs(session, heartbeat_timeout=timeout, now=now, exclude_queues=[TRAIN])
        found = requeue_stale_jobs(
            session, heartbeat_timeout=timeout, publish=publish, now=now, queues=[TRAIN]
        )
        return done + found.requeued + found.failed


def celery_pinger(app: object, *, timeout: float) -> Pinger:
    """Ping every worker over the broker (Celery remote control) and list who answered."""

    def ping() -> list[str]:
        with translating("pinging workers"):
            replies = app.control.ping(timeout=timeout)  # type: ignore[attr-defined]
        return sorted({name for reply in replies or [] for name in reply})

    return ping


def record_workers(settings: Settings, pinger: Pinger, *, now: datetime) -> list[str]:
    """Ping the workers, record those that answered, forget the long silent."""
    names = pinger()
    with session_scope(settings.resolved_database_url) as session:
        repo.saw_workers(session, names, now=now)
        if settings.retain_workers is not None:
            repo.forget_workers(session, not_seen_since=now - settings.retain_workers)
    return names
