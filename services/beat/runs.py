"""Due schedules become jobs: one ordinary job per run, submitted like any producer's.

For each schedule whose ``next_run_at`` has passed, beat builds the job from
the schedule's template with the run's idempotency key
(:func:`shared.schedules.run_key`) and hands it to
:meth:`shared.client.Client.submit_request`, which inserts the row and
publishes the message. Then, in one transaction, the job is linked to its
schedule and ``next_run_at`` moves on (:func:`shared.db.schedules.record_run`).

If beat stops between the two steps, the run is still due when it comes back;
submitting it again finds the job by its key instead of sending a second one,
and the link is made then. A run that cannot be submitted for good (its
template no longer validates, the broker refused it) is recorded with its
error and the schedule moves on; the database being away leaves the run due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.client import Client
from shared.db import schedules as repo
from shared.db.engine import session_scope
from shared.db.models import Schedule
from shared.errors import BrokerRefused, BrokerUnavailable, JobError
from shared.schedules import cadence_of, run_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run beat made: which schedule, which slot, and its job or error."""

    schedule: str
    slot: datetime
    next_run_at: datetime
    job_id: str | None
    error: str | None
    recorded: bool


def due_runs(client: Client, *, now: datetime, limit: int = 100) -> list[Run]:
    """Submit the run of every schedule due at ``now``; returns what was done."""
    with session_scope(client.settings.resolved_database_url) as session:
        due = list(repo.due(session, now=now, limit=limit))
        session.expunge_all()
    return [_fire(client, schedule, now=now) for schedule in due]


def _fire(client: Client, schedule: Schedule, *, now: datetime) -> Run:
    slot = schedule.next_run_at
    job_id: str | None = None
    error: str | None = None
    try:
        request = run_request(schedule, slot=slot).with_id()
        job_id = request.id
        job_id = client.submit_request(request).id
    except JobError as exc:  # refused before any row was written
        job_id, error = None, f"{exc.code}: {exc}"
    except (BrokerUnavailable, BrokerRefused) as exc:  # the client has failed the job row
        error = f"{exc.code}: {exc}"
    following = cadence_of(schedule).following(slot, now=now)
    with session_scope(client.settings.resolved_database_url) as session:
        recorded = repo.record_run(
            session, schedule.id, slot=slot, next_run_at=following, job_id=job_id, error=error
        )
    run = Run(schedule.name, slot, following, job_id, error, recorded)
    _log(run)
    return run


def _log(run: Run) -> None:
    extra = {"schedule": run.schedule, "job_id": run.job_id}
    if run.error:
        log.warning(
            "schedule %s: run of %s failed: %s", run.schedule, run.slot, run.error, extra=extra
        )
    else:
        log.info(
            "schedule %s: run of %s is job %s", run.schedule, run.slot, run.job_id, extra=extra
        )
    if not run.recorded:
        log.info(
            "schedule %s changed or went while its run was submitted", run.schedule, extra=extra
        )
