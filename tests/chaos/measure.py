"""The chaos run's figures, from what the database recorded, not from what was assumed.

- ``lost``: accepted jobs with no row, or a row that never reached a terminal state;
- ``stuck``: rows of any job (producers' and workers' own) not terminal at the end;
- ``duplicated``: jobs that ran to completion more than once, by either record:
  the workers' attempt log (more than one attempt with a completed ending), or
  the audit trigger below, which the run installs on its own database: every
  change of a job's state or result, written by PostgreSQL itself, so a second
  terminal write, or a terminal state left, is seen whatever the code believed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.attempts import COMPLETED
from shared.states import TERMINAL
from tests.chaos.traffic import Planned

AUDIT = [
    """CREATE TABLE chaos_audit (
        job_id varchar(36) NOT NULL,
        old_state varchar(16),
        new_state varchar(16),
        result_changed boolean NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """CREATE FUNCTION chaos_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.state IS DISTINCT FROM OLD.state OR NEW.result IS DISTINCT FROM OLD.result THEN
            INSERT INTO chaos_audit (job_id, old_state, new_state, result_changed)
            VALUES (NEW.id, OLD.state, NEW.state, NEW.result IS DISTINCT FROM OLD.result);
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER chaos_audit AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION chaos_audit()",
]

TERMINAL_NAMES = tuple(state.value for state in TERMINAL)


def install_audit(engine: Engine) -> None:
    with engine.begin() as connection:
        for statement in AUDIT:
            connection.execute(text(statement))


def figures(engine: Engine, accepted: dict[str, Planned]) -> dict[str, Any]:
    with engine.connect() as connection:
        rows = {
            row.id: (row.state, row.error_type, row.error_message, row.attempts)
            for row in connection.execute(
                text("SELECT id, state, error_type, error_message, attempts FROM jobs")
            )
        }
        completed = connection.execute(
            text(
                "SELECT job_id FROM job_attempts WHERE outcome = ANY(:endings) "
                "GROUP BY job_id HAVING count(*) > 1"
            ),
            {"endings": [ending.value for ending in COMPLETED]},
        ).scalars()
        twice_by_attempts = set(completed)
        audit = connection.execute(
            text(
                "SELECT job_id FROM chaos_audit GROUP BY job_id HAVING "
                "count(*) FILTER (WHERE new_state = ANY(:terminal)) > 1 "
                "OR bool_or(old_state = ANY(:terminal)) "
                "OR count(*) FILTER (WHERE result_changed) > 1"
            ),
            {"terminal": list(TERMINAL_NAMES)},
        ).scalars()
        twice_by_audit = set(audit)
        lost_attempts = connection.execute(
            text("SELECT count(*) FROM job_attempts WHERE outcome = 'lost'")
        ).scalar_one()
        terminal_writes = connection.execute(
            text("SELECT count(*) FROM chaos_audit WHERE new_state = ANY(:terminal)"),
            {"terminal": list(TERMINAL_NAMES)},
        ).scalar_one()
    states = Counter(rows[job_id][0] for job_id in accepted if job_id in rows)
    lost = sorted(j for j in accepted if j not in rows or rows[j][0] not in TERMINAL_NAMES)
    stuck = sorted(j for j, row in rows.items() if row[0] not in TERMINAL_NAMES)
    unexpected = {
        job_id: f"{job.kind} ended {rows[job_id][0]}: {rows[job_id][1]}: {rows[job_id][2]}"
        for job_id, job in accepted.items()
        if job_id in rows
        and rows[job_id][0] in TERMINAL_NAMES
        and rows[job_id][0] not in job.expect
    }
    failures = Counter(row[1] for job_id, row in rows.items() if row[0] == "FAILED")
    return {
        "submitted": len(accepted),
        "succeeded": states["SUCCEEDED"],
        "failed": states["FAILED"],
        "cancelled": states["CANCELLED"],
        "lost": len(lost),
        "duplicated": len(twice_by_attempts | twice_by_audit),
        "stuck": len(stuck),
        "duplicated_by_attempt_log": len(twice_by_attempts),
        "duplicated_by_audit_trigger": len(twice_by_audit),
        "terminal_writes": terminal_writes,
        "rows": len(rows),
        "reruns": sum(1 for row in rows.values() if row[3] > 1),
        "attempts_lost_with_their_worker": lost_attempts,
        "failed_by_type": dict(sorted(failures.items(), key=lambda kv: str(kv[0]))),
        "unexpected": len(unexpected),
        "unexpected_examples": dict(list(unexpected.items())[:10]),
        "lost_ids": lost[:20],
        "stuck_ids": stuck[:20],
        "duplicated_ids": sorted(twice_by_attempts | twice_by_audit)[:20],
    }
