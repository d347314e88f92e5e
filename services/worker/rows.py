"""The runner's database writes: claim, finish, refuse; each retried while the DB is away.

Each write is one transaction (or one part of a group of them committed together, see
``group_commit.py``) that changes the job row through :mod:`shared.states` and logs the
attempt through :mod:`shared.attempts`, so the two never disagree. :meth:`Rows.persist`
retries a write with exponential backoff (0.2 s doubling to 10 s) for ``retry_seconds``,
then raises
:class:`DatabaseUnavailable`: the task then hands the message back unacked,
never acks a job whose outcome did not land.

A message whose id names an existing row with other contents (an id reused by
mistake, or by a hostile producer) is not run and does not touch that row.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.worker.group_commit import GroupCommit
from shared import attempts, states
from shared.attempts import Ending
from shared.db import repo
from shared.db.direct import Direct, direct
from shared.db.engine import session_scope
from shared.db.models import Job, utcnow
from shared.errors import DatabaseUnavailable, PipeqError, TransactionRolledBack
from shared.jobs import JobRequest
from shared.messages import job_id_of, storable
from shared.retrying import with_backoff
from shared.settings import Settings
from shared.states import Outcome, Started, State

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")

__all__ = ["Rows", "job_id_of"]


#: The state a job's row is in once an attempt's ending is written.
ENDED_IN = {
    Ending.SUCCEEDED: State.SUCCEEDED,
    Ending.CANCELLED: State.CANCELLED,
    Ending.FAILED: State.FAILED,
    Ending.TIMEOUT: State.FAILED,
    Ending.POISON: State.FAILED,
}


class Rows:
    """Job-row writes for one worker."""

    def __init__(
        self, db_url: str, *, worker: str, settings: Settings, retry_seconds: float
    ) -> None:
        self.db_url = db_url
        self.worker = worker
        self.inline_limit = settings.inline_inputs_bytes
        self.retry_seconds = retry_seconds
        self.group = GroupCommit(self.persist_alone)
        #: PostgreSQL: a claim or success committing alone is first tried as one statement.
        self.direct = direct(db_url)

    @staticmethod
    def size_of(raw: Any) -> int:
        return len(json.dumps(raw, default=repr).encode())

    def claimed_before(self, job_id: str, *, stale_after: timedelta) -> bool:
        """Whether an earlier attempt of the job died unfinished: a suspect (see gate.py).

        That is a job claimed before and queued again, or running under a lease gone silent
        (a job running under a live lease is not: its copy will only wait, not run).
        """

        def read(session: Session) -> bool:
            job = session.execute(
                select(Job.attempts, Job.state, Job.heartbeat_at).where(Job.id == job_id)
            ).first()
            if job is None or job.attempts == 0:
                return False
            if job.state == State.QUEUED:
                return True
            beat = job.heartbeat_at
            return job.state == State.RUNNING and (beat is None or beat < utcnow() - stale_after)

        return self.persist(read)

    def claim(self, request: JobRequest, *, stale_after: timedelta, linger: float = 0.0) -> Started:
        """Claim the job under a new lease; ``linger``: see ``GroupCommit.run``."""
        claim, job_id = _Claim(request, stale_after), request.id or ""
        started: Started = self.group.run(
            lambda session: self._claim_many(session, [claim])[0],
            bulk=(self._claim_many, claim),
            alone=self._quickly(
                lambda session: self._claim_matching(session, [claim]).get(job_id),
                lambda session: self._claim_generally(session, [claim])[job_id],
            ),
            linger=linger,
        )
        if started.outcome is Outcome.CONFLICT:
            log.warning(
                "job %s: the message does not match the job's row (task, model, inputs or "
                "params differ); not run, row left as it is",
                request.id,
                extra={"job_id": request.id},
            )
        return started

    def _claim_many(self, session: Session, claims: list[_Claim]) -> list[Started]:
        """Claim jobs together: rows ensured, identities checked, each job started under its
        own lease and its attempt logged, with four statements for the lot. On PostgreSQL
        one statement claims every job whose row matches its message (the common case);
        the general way sorts out the rest."""
        firsts, again = _first_of_each(claims, lambda claim: claim.request.id or "")
        quick = self._claim_matching(session, firsts) if states.on_postgres(session) else {}
        firsts = [claim for claim in firsts if claim.request.id not in quick]
        found = self._claim_generally(session, firsts) if firsts else {}
        found.update(quick)
        # A second copy of a message in the same group: claimed after the first, it finds it.
        repeated = {id(claim): self._claim_many(session, [claim])[0] for claim in again}
        return [repeated.get(id(claim)) or found[claim.request.id or ""] for claim in claims]

    def _claim_matching(
        self, session: Session | Direct, claims: list[_Claim]
    ) -> dict[str, Started]:
        """PostgreSQL: the claims of distinct jobs whose rows match their messages, in one
        statement (``states.start_matching``); the others are left untouched."""
        return states.start_matching(
            session,
            [_matching(claim.request) for claim in claims],
            worker=self.worker,
            stale_after=claims[0].stale_after,
        )

    def _claim_generally(self, session: Session, firsts: list[_Claim]) -> dict[str, Started]:
        """Claims of distinct jobs, whatever their rows hold (or if they have none)."""
        requests = {claim.request.id or "": claim.request for claim in firsts}
        known = _identities(session, list(requests))
        absent = [request for job_id, request in requests.items() if job_id not in known]
        if absent:
            inserted = repo.ensure_jobs(session, absent, inline_limit=self.inline_limit)
            raced = [r.id or "" for r in absent if r.id not in inserted]
            known.update(_identities(session, raced) if raced else {})
        conflicts = {
            job_id
            for job_id, row in known.items()
            if not _matches(row, requests[job_id].model_dump())
        }
        leases = {job_id: str(uuid.uuid4()) for job_id in requests if job_id not in conflicts}
        found = (
            states.start_many(
                session, leases, worker=self.worker, stale_after=firsts[0].stale_after
            )
            if leases
            else {}
        )
        claimed = [
            (job_id, s.lease, s.attempt)
            for job_id, s in found.items()
            if s.outcome is Outcome.STARTED and s.lease
        ]
        attempts.open_many(session, claimed, worker=self.worker)
        for job_id in conflicts:
            found[job_id] = Started(Outcome.CONFLICT, state=states.current(session, job_id))
        return found

    def finish(
        self,
        job_id: str,
        lease: str | None,
        ending: Ending,
        *,
        result: Any = None,
        code: str = "",
        message: str = "",
        progress: dict[str, Any] | None = None,
        linger: float = 0.0,
        full: int | None = None,
    ) -> str:
        """Write the attempt's outcome (and its last ``progress``, if given), if it still
        holds the job; returns the job's state. ``linger`` and ``full``, for a success: see
        ``GroupCommit.run``."""
        if ending is Ending.FAILED or ending is Ending.TIMEOUT:
            log.info("job %s failed: %s", job_id, message, extra={"job_id": job_id})
        end = _End(job_id, lease, ending, result, code, message, progress)
        if ending is Ending.SUCCEEDED and lease is not None:  # the common case: in bulk
            state: str = self.group.run(
                lambda session: self._succeed_many(session, [end])[0],
                bulk=(self._succeed_many, end),
                alone=self._quickly(
                    lambda session: _succeed_closing(session, end),
                    lambda session: self._finish(session, end),
                ),
                linger=linger,
                full=full,
            )
            return state
        return self.persist(lambda session: self._finish(session, end))

    def _succeed_many(self, session: Session, ends: list[_End]) -> list[str]:
        """Successes together: one ``UPDATE`` for the jobs whose lease still holds them and
        whose cancel was not asked, one for their attempts; any other, one by one."""
        firsts, again = _first_of_each(ends, lambda end: end.job_id)
        results, progress = _successes(firsts)
        if states.on_postgres(session):  # the attempts closed by the same statement
            won = states.succeed_closing(session, results, progress=progress)
        else:
            won = states.succeed_many(session, results, progress=progress)
            leases = [end.lease or "" for end in firsts if end.job_id in won]
            if leases:
                attempts.close_many(session, leases, Ending.SUCCEEDED)
        answers = {
            id(end): str(State.SUCCEEDED) if end.job_id in won else self._finish(session, end)
            for end in firsts
        }
        answers.update((id(end), self._finish(session, end)) for end in again)
        return [answers[id(end)] for end in ends]

    def _finish(self, session: Session, end: _End) -> str:
        """One attempt's outcome: cancelled if a cancel was asked, superseded if it lost."""
        job_id, lease, ending = end.job_id, end.lease, end.ending
        if end.progress is not None and lease is not None:
            states.heartbeat(session, job_id, lease=lease, progress=end.progress)
        won = False
        final = ending
        if ending is Ending.SUCCEEDED and states.cancel_requested(session, job_id):
            final = Ending.CANCELLED
        if final is Ending.SUCCEEDED:
            won = states.succeed(session, job_id, end.result, lease=lease)
        elif final is Ending.CANCELLED:
            won = states.finish_cancelled(session, job_id, lease=lease)
        elif final is not Ending.SUPERSEDED:
            text = storable(end.message)
            won = states.fail(session, job_id, error_type=end.code, message=text, lease=lease)
        if lease is not None:
            attempts.close(session, lease, final if won else Ending.SUPERSEDED)
        state = ENDED_IN[final] if won else states.current(session, job_id)
        if not won and final is not Ending.SUPERSEDED:
            log.warning(
                "job %s: already %s; this attempt's late %s discarded",
                job_id,
                state,
                final.value,
                extra={"job_id": job_id},
            )
        return str(state)

    def reject(self, job_id: str, raw: Any, exc: PipeqError, *, queue: str) -> None:
        """Fail a message that never became a valid job, creating its row if needed."""
        log.warning("job %s: refused: %s", job_id, exc, extra={"job_id": job_id})

        def write(session: Session) -> None:
            kept = storable(raw)
            inserted = repo.ensure_raw_job(
                session, job_id=job_id, raw=kept, queue=queue, inline_limit=self.inline_limit
            )
            existing = None if inserted else _identity(session, job_id)
            if inserted or (existing is not None and _matches(existing, kept)):
                states.fail(session, job_id, error_type=exc.code, message=storable(str(exc)))
            else:
                log.warning(
                    "job %s: refused message does not match the existing row; row left as it is",
                    job_id,
                    extra={"job_id": job_id},
                )

        self.persist(write)

    def persist(self, write: Callable[[Session], T]) -> T:
        """Run ``write`` in a transaction, maybe shared with other job threads' writes
        (``group_commit.py``), retrying with backoff while the DB is away."""
        return self.group.run(write)

    def _quickly(
        self, quick: Callable[[Direct], T | None], write: Callable[[Session], T]
    ) -> Callable[[], T] | None:
        """For a write committing alone on PostgreSQL: ``quick``, one statement outside a
        transaction (one round trip, not three: no BEGIN, no COMMIT), sent straight through
        psycopg (``shared/db/direct.py``: no session, no pool checkout), for the common case;
        if it wrote nothing (None: the row is not as expected), ``write``, the general way,
        in a transaction sorts it out. None elsewhere (SQLite: the group's write as it is)."""
        direct = self.direct
        if direct is None:
            return None

        def alone() -> T:
            done = self._retrying(lambda: quick(direct))
            return done if done is not None else self.persist_alone(write)

        return alone

    def persist_alone(self, write: Callable[[Session], T], *, autocommit: bool = False) -> T:
        """Run ``write`` in a transaction of its own (``autocommit``: each statement in its
        own, see ``session_scope``), retrying while the DB is away."""

        def once() -> T:
            # No ping: a connection lost with a restarted server fails this try, not the next.
            with session_scope(self.db_url, ping=False, autocommit=autocommit) as session:
                return write(session)

        return self._retrying(once)

    def _retrying(self, once: Callable[[], T]) -> T:
        """``once()``, tried again with backoff while the DB is away."""

        def retrying(exc: BaseException, delay: float) -> None:
            if isinstance(exc, TransactionRolledBack):
                log.warning("%s; trying again in %.1f s", exc, delay)
            else:
                log.warning("database unavailable, retrying in %.1f s: %s", delay, exc)

        return with_backoff(
            once,
            errors=DatabaseUnavailable,
            seconds=self.retry_seconds,
            first=0.2,
            most=10.0,
            on_retry=retrying,
        )


@dataclass(frozen=True)
class _Claim:
    request: JobRequest
    stale_after: timedelta


@dataclass(frozen=True)
class _End:
    job_id: str
    lease: str | None
    ending: Ending
    result: Any = None
    code: str = ""
    message: str = ""
    progress: dict[str, Any] | None = None


def _matching(request: JobRequest) -> states.Claim:
    """A claim of ``request``'s job under a new lease, if its row holds what the message says."""
    digest, _size = repo.digest(request.inputs)
    return states.Claim(
        request.id or "", str(uuid.uuid4()), request.task, request.model, digest, request.params
    )


def _successes(ends: list[_End]) -> tuple[dict[str, tuple[str, Any]], dict[str, Any]]:
    """What ``states.succeed_many`` and ``succeed_closing`` take for ``ends`` (distinct jobs):
    each job's lease and result, and its last progress where it has one."""
    results = {end.job_id: (end.lease or "", end.result) for end in ends}
    progress = {end.job_id: end.progress for end in ends if end.progress is not None}
    return results, progress


def _succeed_closing(session: Session | Direct, end: _End) -> str | None:
    """PostgreSQL: one success in one statement, its attempt closed; None if it did not hold."""
    results, progress = _successes([end])
    return (
        str(State.SUCCEEDED)
        if states.succeed_closing(session, results, progress=progress)
        else None
    )


def _first_of_each(items: list[A], key: Callable[[A], str]) -> tuple[list[A], list[A]]:
    """``items`` split into the first for each job, and any later ones for a job seen."""
    firsts: dict[str, A] = {}
    again: list[A] = []
    for item in items:
        if key(item) in firsts:
            again.append(item)
        else:
            firsts[key(item)] = item
    return list(firsts.values()), again


def _identity(session: Session, job_id: str) -> Any:
    """What a message must match in the job's row (see :func:`_matches`)."""
    return _identities(session, [job_id]).get(job_id)


def _identities(session: Session, job_ids: list[str]) -> dict[str, Any]:
    """:func:`_identity` of several jobs, by id (those with a row)."""
    jobs = states.JOBS.c
    columns = (jobs.id, jobs.task, jobs.model, jobs.inputs_digest, jobs.params)
    return {row.id: row for row in session.execute(select(*columns).where(jobs.id.in_(job_ids)))}


def _matches(job: Any, raw: Any) -> bool:
    """Whether the row ``job`` holds the job that the message ``raw`` describes."""
    if not isinstance(raw, dict):
        return False
    digest, _size = repo.digest(raw.get("inputs"))
    return (
        job.task == str(raw.get("task"))
        and job.model == str(raw.get("model"))
        and job.inputs_digest == digest
        and (job.params or {}) == (raw.get("params") or {})
    )
