"""What becomes of a job whose message reached the dead-letter queue ``pipeq-dead``.

RabbitMQ dead-letters a job message when a worker rejects it for good (a body
that is not JSON, a poison job the worker failed) or when the quorum queue's
delivery limit is passed (the message went back to the queue more than
``DELIVERY_LIMIT`` times: its worker died with it in hand, or the database stayed
away). Nothing may vanish, so each dead letter is *settled* against its row:

::

    row terminal already ...................... DONE      nothing to do (a worker failed it)
    no job id anywhere ........................ DROPPED   logged: nothing to record
    body unreadable (not JSON) ................ FAILED    invalid_job
    rejected by a worker (no task header...) .. FAILED    invalid_job: workers reject on purpose
    running under a live lease ................ REDRIVE   (LEFT once out of redrives: its worker
                                                          ends it, or the stale sweep)
    started >= DELIVERY_LIMIT times ........... FAILED    poison: it killed its worker each time
    redriven fewer than MAX_REDRIVES times .... REDRIVE   published to its queue again: it was
                                                          returned without running (a worker
                                                          died with it prefetched, say)
    otherwise ................................. FAILED    dead_lettered, with the reason

The caller publishes REDRIVE letters (see ``shared.deadletter_consumer``) and
acks the dead letter only after this function's transaction has committed.
Functions take the caller's session and never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.orm import Session

from shared import attempts, states
from shared.db import repo
from shared.db.models import utcnow
from shared.messages import job_id_of, read_body, storable
from shared.queues import DELIVERY_LIMIT, ROUTES, WORK_QUEUES
from shared.states import State

#: Times a dead letter whose job never ran is published to its queue again.
MAX_REDRIVES: Final = 2
#: The header that counts redrives on a republished message.
REDRIVE_HEADER: Final = "x-pipeq-redrives"


class Verdict(enum.StrEnum):
    DONE = "done"
    DROPPED = "dropped"
    FAILED = "failed"
    REDRIVE = "redrive"
    LEFT = "left"


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message, read without trusting (or unpickling) it."""

    task_id: str | None
    job: Any
    problem: str | None
    reason: str
    queue: str
    redrives: int

    @property
    def home_queue(self) -> str | None:
        """The work queue to publish the message to again (where it died, or its task's)."""
        if self.queue in WORK_QUEUES:
            return self.queue
        task = self.job.get("task") if isinstance(self.job, dict) else None
        return ROUTES.get(task) if isinstance(task, str) else None

    @property
    def job_id(self) -> str | None:
        if self.task_id is None and not isinstance(self.job, dict):
            return None
        return job_id_of(self.job, self.task_id or "")

    @classmethod
    def read(cls, headers: Mapping[str, Any], body: bytes, content_type: str | None) -> DeadLetter:
        job, problem = read_body(body, content_type)
        deaths = headers.get("x-death") or [{}]
        first = deaths[0] if isinstance(deaths, list) and deaths else {}
        reason = headers.get("x-first-death-reason") or first.get("reason") or "unknown"
        queue = headers.get("x-first-death-queue") or first.get("queue") or ""
        task_id = headers.get("id")
        redrives = headers.get(REDRIVE_HEADER, 0)
        return cls(
            task_id=str(task_id) if task_id is not None else None,
            job=job,
            problem=problem,
            reason=str(reason),
            queue=str(queue),
            redrives=redrives if isinstance(redrives, int) else 0,
        )


def settle(
    session: Session,
    letter: DeadLetter,
    *,
    inline_limit: int,
    lease_seconds: float,
    max_redrives: int = MAX_REDRIVES,
    now: datetime | None = None,
) -> tuple[Verdict, str | None]:
    """Decide (and write) what the dead letter means for its job; see the module doc."""
    job_id = letter.job_id
    if job_id is None:
        return Verdict.DROPPED, None
    now = now or utcnow()
    job = repo.get_job(session, job_id)
    if job is not None and State(job.state).terminal:
        return Verdict.DONE, job_id
    where = f"dead-lettered from queue {letter.queue or '?'} ({letter.reason})"
    if letter.problem is not None:
        message = f"{where}: {letter.problem}"
        return _fail(session, letter, job_id, "invalid_job", message, inline_limit), job_id
    if letter.reason == "rejected":
        message = f"{where}: a worker refused the message (not a pipeq job message)"
        return _fail(session, letter, job_id, "invalid_job", message, inline_limit), job_id
    live = (
        job is not None
        and job.state == State.RUNNING
        and job.heartbeat_at is not None
        and job.heartbeat_at > now - timedelta(seconds=lease_seconds)
    )
    can_redrive = letter.redrives < max_redrives and letter.home_queue is not None
    if live:
        return (Verdict.REDRIVE if can_redrive else Verdict.LEFT), job_id
    claims = job.attempts if job is not None else 0
    if claims >= DELIVERY_LIMIT:
        message = (
            f"poison message, {where}: started {claims} times and each time its worker "
            "stopped before the job ended (killed, crashed or out of memory)"
        )
        return _fail(session, letter, job_id, "poison", message, inline_limit), job_id
    if can_redrive:
        return Verdict.REDRIVE, job_id
    message = (
        f"{where} after {letter.redrives} redrives: delivered more than {DELIVERY_LIMIT} "
        "times without finishing"
    )
    return _fail(session, letter, job_id, "dead_lettered", message, inline_limit), job_id


def _fail(
    session: Session,
    letter: DeadLetter,
    job_id: str,
    code: str,
    message: str,
    inline_limit: int,
) -> Verdict:
    job = storable(letter.job) if isinstance(letter.job, dict) else {}
    repo.ensure_raw_job(
        session, job_id=job_id, raw=job, queue=letter.queue or "unknown", inline_limit=inline_limit
    )
    states.fail(session, job_id, error_type=code, message=storable(message))
    attempts.close_open(session, job_id, attempts.Ending.LOST)
    return Verdict.FAILED


def redrive_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers of a dead letter published again: RabbitMQ's death notes gone, count + 1."""
    kept = {
        key: value
        for key, value in headers.items()
        if not key.startswith(("x-death", "x-first-death", "x-last-death", "x-delivery-count"))
    }
    count = headers.get(REDRIVE_HEADER, 0)
    kept[REDRIVE_HEADER] = (count if isinstance(count, int) else 0) + 1
    return kept
