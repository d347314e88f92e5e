"""pipeq's errors, and the one boundary where outside exceptions become ours.

::

    PipeqError
     ├── JobError                 permanent: the job ends FAILED at once, the message is acked
     │    ├── InvalidJob          the message is malformed (not JSON, missing or mistyped fields)
     │    │    ├── InvalidParameter   a parameter is unknown, mistyped or out of range
     │    │    └── InvalidInput       inputs that are empty, too large, or do not decode
     │    ├── UnknownModel        the alias is not in the registry
     │    ├── UnsupportedTask     the task is not one pipeq serves
     │    ├── ModelFailure        the model cannot load or run this input (bad checkpoint, OOM)
     │    └── JobTimeout          the job ran past its task family's time limit
     ├── JobCancelled             control flow: a user cancelled the job; it ends CANCELLED
     ├── JobNotFound              a status query names no job (the CLI exits 1, the gateway 404s)
     ├── ScheduleNotFound         no schedule has that name (exit 1)
     ├── InvalidSchedule          a schedule's name or cadence is malformed, or taken (exit 2)
     ├── TransientError           retried with backoff; the message is not acked meanwhile
     │    ├── DatabaseUnavailable
     │    └── BrokerUnavailable
     └── ConfigError              bad settings or registry: the process refuses to start
          ├── BrokerRefused       the broker turned the login away (user, password, vhost)
          └── SchemaMissing       the database has no pipeq tables: `pipeq db upgrade` first

Code that calls SQLAlchemy, kombu, torch or transformers does it inside
:func:`translating`, which re-raises their exceptions as the ones above,
``from`` the original. Each :class:`JobError` carries a short ``code`` that is
stored in the job row's ``error_type`` and a message a user can act on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class PipeqError(Exception):
    """Root of every error pipeq raises on purpose."""

    code = "error"


class JobError(PipeqError):
    """A job cannot succeed as submitted; retrying it would fail the same way."""

    code = "job_error"


class InvalidJob(JobError):
    code = "invalid_job"


class IdempotencyKeyReused(InvalidJob):
    """An idempotency key already names another job (task, model, inputs or parameters)."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for job {job_id} with another task, model, "
            "inputs or parameters"
        )
        self.key = key
        self.job_id = job_id


class InvalidParameter(InvalidJob):
    code = "invalid_parameter"

    def __init__(self, name: str, problem: str, *, also: tuple[InvalidParameter, ...] = ()) -> None:
        self.name = name
        self.problem = problem
        self.also = also  # the other parameters at fault in the same job, if any
        super().__init__("; ".join(f"parameter {p.name!r}: {p.problem}" for p in self.every))

    @property
    def every(self) -> tuple[InvalidParameter, ...]:
        return (self, *self.also)


class InvalidInput(InvalidJob):
    code = "invalid_input"


class UnknownModel(JobError):
    code = "unknown_model"


class UnsupportedTask(JobError):
    code = "unsupported_task"


class ModelFailure(JobError):
    code = "model_failure"


class JobTimeout(JobError):
    code = "timeout"


class JobCancelled(PipeqError):
    code = "cancelled"


class JobNotFound(PipeqError, LookupError):
    code = "not_found"


class ScheduleNotFound(PipeqError, LookupError):
    code = "schedule_not_found"


class InvalidSchedule(PipeqError):
    code = "invalid_schedule"


class TransientError(PipeqError):
    """Something outside the job is away for now; the same job may succeed later."""

    code = "transient"


class DatabaseUnavailable(TransientError):
    code = "database_unavailable"


class TransactionRolledBack(DatabaseUnavailable):
    """The database rolled a transaction back to break a deadlock or a serialization
    conflict (SQLSTATE class 40): nothing is away, and the same writes, tried again, go
    through. A kind of :class:`DatabaseUnavailable` so that every retry loop retries it."""

    code = "database_conflict"


class BrokerUnavailable(TransientError):
    code = "broker_unavailable"


class ConfigError(PipeqError):
    code = "config_error"


class BrokerRefused(ConfigError):
    """The broker answered and refused us: retrying will not help, the URL must change."""

    code = "broker_refused"


class SchemaMissing(ConfigError):
    code = "schema_missing"


UPGRADE_HINT = "run `pipeq db upgrade` against this database first"


def _is_out_of_memory(exc: BaseException) -> bool:
    # torch.OutOfMemoryError, matched by name: shared/ never imports torch.
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


@contextlib.contextmanager
def translating(context: str = "") -> Iterator[None]:
    """Re-raise outside exceptions as pipeq's, keeping the original as ``__cause__``.

    ``context`` prefixes the message ("loading model tiny-x", say) so that a
    user sees where it failed.
    """
    prefix = f"{context}: " if context else ""
    try:
        yield
    except PipeqError:
        raise
    except Exception as exc:
        translated = _translate(exc, prefix)
        if translated is None:
            raise
        raise translated from exc


def _missing_table(exc: Exception) -> str | None:
    """The table a statement named that the database lacks (PostgreSQL's undefined_table,
    SQLite's "no such table"), or None."""
    import re

    found = re.search(r'relation "([^"]+)" does not exist|no such table: (\S+)', str(exc))
    return (found.group(1) or found.group(2)) if found else None


def _translate(exc: Exception, prefix: str) -> PipeqError | None:
    import amqp.exceptions
    import kombu.exceptions
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and (table := _missing_table(exc)):
        return SchemaMissing(
            f"{prefix}the database has no table {table!r} (pipeq's schema is missing or "
            f"older than this pipeq); {UPGRADE_HINT}"
        )
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        if str(getattr(exc.orig, "sqlstate", "") or "").startswith("40"):
            first = (str(exc.orig).splitlines() or [""])[0]
            return TransactionRolledBack(
                f"{prefix}the database rolled the transaction back "
                f"({type(exc.orig).__name__}: {first})"
            )
        return DatabaseUnavailable(f"{prefix}database unavailable ({exc.orig!r})")
    if isinstance(exc, sqlalchemy.exc.DisconnectionError | sqlalchemy.exc.TimeoutError):
        return DatabaseUnavailable(f"{prefix}database unavailable ({exc})")
    if isinstance(exc, amqp.exceptions.AccessRefused | amqp.exceptions.NotAllowed):
        reply = getattr(exc, "reply_text", "") or str(exc)
        return BrokerRefused(
            f"{prefix}the broker refused pipeq ({reply}); check the user, password and vhost "
            "in PIPEQ_BROKER_URL, and the user's permissions on that vhost"
        )
    if isinstance(exc, kombu.exceptions.OperationalError | ConnectionError):
        return BrokerUnavailable(f"{prefix}broker unavailable ({exc})")
    if _is_out_of_memory(exc):
        return ModelFailure(f"{prefix}out of memory ({str(exc).splitlines()[0][:200]})")
    if isinstance(exc, OSError) and "does not appear to have" in str(exc):
        return ModelFailure(f"{prefix}{exc}")
    return None
