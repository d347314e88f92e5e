"""notify listeners when a job ends (PostgreSQL)

A trigger sends the job's id on the channel ``pipeq_job_ended`` whenever a job's
state becomes terminal, whoever wrote it (worker, stale sweep, dead letters, a
cancel); the notice goes out at commit. ``Client.wait`` listens for it
(``shared/db/ended.py``). SQLite has no notices: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION pipeq_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pipeq_job_ended', NEW.id);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER jobs_ended AFTER UPDATE OF state ON jobs FOR EACH ROW
        WHEN (NEW.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
              AND OLD.state IS DISTINCT FROM NEW.state)
        EXECUTE FUNCTION pipeq_job_ended()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS jobs_ended ON jobs")
    op.execute("DROP FUNCTION IF EXISTS pipeq_job_ended()")
