"""Durations as people write them: ``90s``, ``10m``, ``1h30m``, ``7d``.

Used wherever a person types a span of time: ``pipeq schedule add --every 10m``
and the housekeeping settings (``PIPEQ_RETAIN_SUCCEEDED=7d``). A bare number is
seconds, as in most of Celery's and RabbitMQ's settings.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """``"1h30m"`` -> 90 minutes; raises ValueError for anything else or a negative span."""
    cleaned = text.strip().lower().replace(" ", "")
    try:
        return timedelta(seconds=float(cleaned)) if _is_number(cleaned) else _parse_parts(cleaned)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", text) is not None


def _parse_parts(text: str) -> timedelta:
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f"not a duration: {text!r} (write it like 90s, 10m, 1h30m, 7d, or seconds)"
        )
    seconds = sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(span: timedelta) -> str:
    """The short form :func:`parse_duration` reads back: 90 minutes -> ``1h30m``."""
    seconds = span.total_seconds()
    if seconds != int(seconds):
        return f"{seconds:g}s"
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
