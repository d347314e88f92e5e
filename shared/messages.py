"""A job message on the wire: its Celery body, its job id, and reading one back safely.

The body of every job message is Celery protocol 2 in JSON, ``[[JOB], {}, {}]``
(see the README's message contract). Code that has to read a message outside
Celery (the dead-letter consumer, the stale sweep that republishes a job) reads
it here, and only as JSON: a body of any other content type is reported as
unreadable, never decoded, so a pickled body is never unpickled.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

JSON_CONTENT_TYPE: Final = "application/json"


def celery_body(job: dict[str, Any]) -> bytes:
    """The body that carries ``job`` as the task's one positional argument."""
    meta = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([[job], {}, meta], separators=(",", ":")).encode()


def read_body(body: bytes | str, content_type: str | None) -> tuple[Any, str | None]:
    """(the job object, None), or (None, why it cannot be read) for any other body.

    A Celery body's single positional argument is the job; a body that is JSON
    but not shaped so is returned as it is, for the worker's parser to refuse.
    """
    if (content_type or "").split(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        return None, f"content type {content_type!r} is not JSON; pipeq reads JSON only"
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the body is not valid JSON ({type(exc).__name__})"
    if (
        isinstance(decoded, list)
        and len(decoded) == 3
        and isinstance(decoded[0], list)
        and len(decoded[0]) == 1
    ):
        return decoded[0][0], None
    return decoded, None


def job_id_of(raw: Any, fallback: str) -> str:
    """The job's id: the message's own if it is a UUID, else the Celery task id."""
    candidate = raw.get("id") if isinstance(raw, dict) else None
    for value in (candidate, fallback):
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                continue
    # A foreign producer's task id that is not a UUID: derive a stable one from it.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pipeq:{fallback}"))
