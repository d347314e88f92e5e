"""Logging for every pipeq process: plain lines for people, JSON lines for machines.

``PIPEQ_LOG_JSON=1`` switches to one JSON object per line; any ``extra`` given to
a log call (``job_id``, ``model``...) becomes a field of it.

Every line about a job carries its ``job_id``: the worker's runner wraps each job
in :func:`job_logging`, and the handler's :class:`JobContext` filter stamps the id
on whatever is logged meanwhile in that thread (a model loading on first use, a
library's warning), and on Celery's own lines about the task (its task id is the
job id).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_JOB: ContextVar[str | None] = ContextVar("pipeq_job_id", default=None)


@contextlib.contextmanager
def job_logging(job_id: str) -> Iterator[None]:
    """Within this block, every log line of the current thread (or task) names ``job_id``."""
    token = _JOB.set(job_id)
    try:
        yield
    finally:
        _JOB.reset(token)


class JobContext(logging.Filter):
    """Adds ``job_id`` to a record that lacks one: from :func:`job_logging`, else from Celery.

    Celery logs a task's arrival and end with a mapping of the task (``{"id": ..., "name":
    ...}``) as the record's arguments; pipeq's task id is the job id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            job_id = _JOB.get()
            args = record.args
            if job_id is None and isinstance(args, Mapping) and "id" in args and "name" in args:
                job_id = str(args["id"])
            if job_id is not None:
                record.job_id = job_id
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process is not None:
            entry["process"] = self.process
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: str = "INFO", *, as_json: bool = False, process: str | None = None
) -> None:
    """Lines to stderr; ``process`` names one of several processes writing to the same place
    (``pipeq worker --processes N``: ``[2]`` after the time, or a ``process`` field)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContext())
    if as_json:
        handler.setFormatter(JsonFormatter(process))
    else:
        tag = f"[{process}] " if process is not None else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {tag}%(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "datasets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
