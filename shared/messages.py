"""A job message on the wire: its Celery body, its job id, and reading one back safely.

The body of every job message is Celery protocol 2 in JSON, ``[[JOB], {}, {}]``
(see the README's message contract). Code that has to read a message outside
Celery (the dead-letter consumer, the stale sweep that republishes a job) reads
it here, and only as JSON: a body of any other content type is reported as
unreadable, never decoded, so a pickled body is never unpickled.

:func:`check_json` is the first look at any job, on both sides of the broker:
it refuses, without recursion, what would break code further on (nesting
thousands deep, NaN, text PostgreSQL cannot store); :func:`storable` cleans
what a refused message's row keeps.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any, Final

from shared.errors import InvalidJob

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
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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


#: Deepest nesting of lists and objects a job may have (inputs included).
MAX_DEPTH: Final = 64


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character, which pipeq does not store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate: not valid Unicode text"
    return None


def check_json(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse what no task can use and the database cannot store, before anything recurses.

    Nesting deeper than ``max_depth``, NaN or infinity, and strings (keys too) with
    a NUL character or an unpaired surrogate raise :class:`InvalidJob` naming where.
    Iterative, so a hostile depth cannot exhaust the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, "job", 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            raise InvalidJob(f"{where}: nested deeper than {max_depth} levels")
        if isinstance(item, str):
            if problem := _text_problem(item):
                raise InvalidJob(f"{where}: {problem}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidJob(f"{where}: NaN and infinity are not allowed")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := _text_problem(key)):
                    raise InvalidJob(f"{where}: a key {problem}")
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def storable(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` made safe to keep in a row: bad characters replaced, too-deep parts dropped."""

    def clean(item: Any, depth: int) -> Any:
        if depth > max_depth:
            return None
        if isinstance(item, str):
            text = item.replace("\x00", "\ufffd")
            return text.encode("utf-8", "replace").decode("utf-8")
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {clean(str(k), depth): clean(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(child, depth + 1) for child in item]
        return item

    return clean(value, 1)
