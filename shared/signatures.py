"""Webhook signatures: how the gateway signs a delivery and how a receiver checks it.

The header ``Pipeq-Signature: t=<unix seconds>,v1=<hex>`` carries the time of
signing and ``HMAC-SHA256(secret, f"{t}." + body)``. The time is inside the
MAC, so a receiver that refuses old timestamps also refuses replays. The
README shows the same check in a few lines for receivers without pipeq.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

HEADER: Final = "Pipeq-Signature"
TOLERANCE_SECONDS: Final = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Pipeq-Signature`` header value for ``body``."""
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},v1={_mac(secret, when, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, at most ``tolerance`` seconds ago."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(_mac(secret, timestamp, body), given)
