"""The job state machine: the only code that changes a job's state.

:mod:`shared.states.machine` draws the machine and holds the writes for one job;
:mod:`shared.states.many` and :mod:`shared.states.postgres` the writes for a worker's
groups of jobs. Callers import from here: ``from shared import states``.
"""

from shared.states.machine import (
    JOBS,
    SOURCES,
    TERMINAL,
    Holding,
    Outcome,
    Started,
    State,
    can_move,
    cancel,
    cancel_requested,
    current,
    fail,
    finish_cancelled,
    heartbeat,
    holdings,
    not_queued,
    requeue,
    succeed,
)
from shared.states.many import start, start_many, succeed_many
from shared.states.postgres import (
    Beat,
    Claim,
    heartbeat_many,
    on_postgres,
    start_matching,
    succeed_closing,
)

__all__ = [
    "JOBS",
    "SOURCES",
    "TERMINAL",
    "Beat",
    "Claim",
    "Holding",
    "Outcome",
    "Started",
    "State",
    "can_move",
    "cancel",
    "cancel_requested",
    "current",
    "fail",
    "finish_cancelled",
    "heartbeat",
    "heartbeat_many",
    "holdings",
    "not_queued",
    "on_postgres",
    "requeue",
    "start",
    "start_many",
    "start_matching",
    "succeed",
    "succeed_closing",
    "succeed_many",
]
