"""Webhook signatures: what a receiver checks (shared/signatures.py)."""

from __future__ import annotations

import hashlib
import hmac

from shared import signatures

BODY = b'{"id": "1", "state": "SUCCEEDED"}'


def test_a_signature_verifies_and_names_its_time() -> None:
    header = signatures.sign("whsec_x", BODY, timestamp=1_700_000_000)
    expected = hmac.new(b"whsec_x", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert signatures.verify("whsec_x", header, BODY, now=1_700_000_010)


def test_tampering_a_wrong_secret_or_an_old_time_fail() -> None:
    header = signatures.sign("whsec_x", BODY, timestamp=1_700_000_000)
    assert not signatures.verify("whsec_x", header, BODY + b" ", now=1_700_000_000)
    assert not signatures.verify("whsec_y", header, BODY, now=1_700_000_000)
    assert not signatures.verify("whsec_x", header, BODY, now=1_700_000_000 + 301)
    forged = header.replace("t=1700000000", "t=1700000100")  # a fresh time on an old MAC
    assert not signatures.verify("whsec_x", forged, BODY, now=1_700_000_100)
    for junk in ("", "v1=abc", "t=now,v1=abc", "garbage"):
        assert not signatures.verify("whsec_x", junk, BODY, now=1_700_000_000)
