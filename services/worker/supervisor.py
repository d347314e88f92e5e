"""One thread per worker that watches the jobs in hand: heartbeats, cancels, time limits.

Every ``poll`` seconds it looks at each job the runner holds (a
:class:`~services.worker.control.JobControl`):

- past its deadline: the job is asked to stop, and its row is failed now
  (``timeout``) under the job's lease, so the user sees the failure at the
  limit even if the thread is stuck in a long forward pass; whatever the thread
  returns later is discarded (its write no longer holds the lease);
- every ``heartbeat_seconds``: ``heartbeat_at`` (and any reported progress) is
  stamped, under the lease, so the stale sweep can tell a live long job from
  one whose worker died, and a redelivered copy waits instead of running it twice;
- cancel requested, or the job ended or moved elsewhere: the job is asked to stop.

The database may be away: the thread logs it and tries again at the next poll;
the runner's own writes retry on their own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from services.worker.control import JobControl, Superseded, cancelled
from shared import attempts, states
from shared.db.engine import session_scope
from shared.errors import DatabaseUnavailable
from shared.states import State

log = logging.getLogger(__name__)


class Supervisor:
    """Heartbeats, cancellations and time limits for one worker's jobs in hand."""

    def __init__(
        self,
        *,
        db_url: str,
        heartbeat_seconds: float,
        poll_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db_url = db_url
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds or min(heartbeat_seconds, 1.0)
        self._clock = clock
        self._held: dict[str, JobControl] = {}
        self._timeouts_written: set[str] = set()
        self._lock = threading.Lock()
        self._last_beat = float("-inf")
        self._unstamped: set[str] = set()  # leases of jobs the last beat skipped
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._db_down_since: float | None = None

    @contextlib.contextmanager
    def holding(self, control: JobControl) -> Iterator[JobControl]:
        """Watch ``control``'s job while the block runs."""
        with self._lock:
            self._held[control.lease] = control
        try:
            yield control
        finally:
            with self._lock:
                self._held.pop(control.lease, None)
                self._timeouts_written.discard(control.lease)

    @property
    def held(self) -> list[JobControl]:
        with self._lock:
            return list(self._held.values())

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._loop, name="pipeq-supervisor", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._closing.wait(self.poll_seconds):
            try:
                self.tick()
            except Exception:  # the supervisor must outlive any one bad poll
                log.exception("supervisor poll failed")

    def tick(self) -> None:
        """One poll: time limits first, then heartbeats and what the rows say."""
        now = self._clock()
        held = self.held
        self._enforce_time_limits([c for c in held if c.overdue(now)])
        live = [c for c in held if not c.overdue(now)]
        if not live:
            return
        beat = now - self._last_beat >= self.heartbeat_seconds
        # Between full beats, the jobs the last beat skipped (their rows were locked) are
        # stamped at the next poll rather than a whole interval late.
        due = live if beat else [c for c in live if c.lease in self._unstamped]
        beats = [_beat(control) for control in due]
        stamped: set[str] = set()
        try:
            with session_scope(self.db_url) as session:
                stamped = states.heartbeat_many(session, beats)
                rows = states.holdings(session, [c.job_id for c in live])
        except DatabaseUnavailable as exc:
            self._database_away(now, exc)
            return
        finally:
            _progress_unwritten(due, beats, stamped)
        self._db_down_since = None
        if beat:
            self._last_beat = now
        self._unstamped = {c.lease for c in due if c.job_id not in stamped}
        for control in live:
            row = rows.get(control.job_id)
            if row is None:
                control.stop(Superseded("the job's row is gone"))
            elif row.lease != control.lease:
                control.stop(Superseded("another attempt took the job over"))
            elif row.state is not State.RUNNING:
                control.stop(Superseded(f"the job ended elsewhere ({row.state.value})"))
            elif row.cancel_requested:
                control.stop(cancelled())

    def _enforce_time_limits(self, overdue: list[JobControl]) -> None:
        for control in overdue:
            error = control.timeout_error()
            if control.stop(error):
                log.warning("job %s: %s", control.job_id, error, extra={"job_id": control.job_id})
            if control.lease in self._timeouts_written:
                continue
            try:
                with session_scope(self.db_url) as session:
                    states.fail(
                        session,
                        control.job_id,
                        error_type=error.code,
                        message=str(error),
                        lease=control.lease,
                    )
                    attempts.close(session, control.lease, attempts.Ending.TIMEOUT)
            except DatabaseUnavailable as exc:
                self._database_away(self._clock(), exc)
                continue
            with self._lock:
                if control.lease in self._held:
                    self._timeouts_written.add(control.lease)

    def _database_away(self, now: float, exc: Exception) -> None:
        if self._db_down_since is None:
            self._db_down_since = now
            log.warning("supervisor: database unavailable, heartbeats paused: %s", exc)


def _beat(control: JobControl) -> states.Beat:
    """``control``'s heartbeat, with its progress if it changed since the last one."""
    progress = control.progress if control.progress_changed else None
    control.progress_changed = False
    return states.Beat(control.job_id, control.lease, progress)


def _progress_unwritten(due: list[JobControl], beats: list[states.Beat], stamped: set[str]) -> None:
    """A beat that carried progress but was not written (its row was busy, or the database
    away) leaves the progress to the next beat."""
    for control, beat in zip(due, beats, strict=True):
        if beat.progress is not None and control.job_id not in stamped:
            control.progress_changed = True
