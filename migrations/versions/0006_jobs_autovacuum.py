"""vacuum the job tables after a few hundred dead rows, not a fifth of the table (PostgreSQL)

Every job is updated at least twice (claimed, finished) and its attempt once, and each update
of an indexed column leaves a dead row version and an entry in every index until vacuum. With
PostgreSQL's defaults autovacuum waits for a fifth of the table to be dead: on a table of
millions of finished jobs, millions of dead entries that every claim and success walks past.
Measured (make bench, seven 2,000-job bursts in a row with no vacuum between them): the
worker's statements cost PostgreSQL 0.9 s of CPU in the first burst and 2.4 s in the seventh;
vacuumed before each, 0.8-0.9 s throughout. Autovacuum still visits a table at most once per
``autovacuum_naptime`` (a server setting, 60 s by default; README "Running at scale").
SQLite has no vacuum settings: nothing to do there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "job_attempts")
SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "500",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_analyze_threshold": "500",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    values = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET ({values})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
