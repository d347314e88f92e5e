"""Tenants and their API keys: what ``pipeq keys`` writes and the gateway reads.

A key reads ``pq_<id>_<secret>``. The id is public (it names the key in
``pipeq keys revoke`` and in logs); the whole key is shown once, at creation,
and only its SHA-256 is stored. A fast hash is the right one here: keys are 256
random bits, so there is nothing to guess, and the gateway checks a key on every
request. Slow password hashes (bcrypt, argon2) defend low-entropy secrets.

Each tenant also has a webhook secret, kept in clear because signing needs it.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import ApiKey, Tenant, utcnow

PREFIX: Final = "pq"
#: Tenant names: no ``:``, so ``tenant:key`` idempotency keys cannot collide.
TENANT_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY_PATTERN: Final = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is its only appearance in clear."""

    id: str
    tenant: str
    key: str
    webhook_secret: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None (no database needed to refuse junk)."""
    match = _KEY_PATTERN.match(key)
    return match.group(1) if match else None


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def check_tenant(name: str) -> str:
    if not TENANT_PATTERN.match(name):
        raise ValueError(
            f"tenant {name!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def ensure_tenant(session: Session, name: str) -> Tenant:
    tenant = session.get(Tenant, check_tenant(name))
    if tenant is None:
        tenant = Tenant(name=name, webhook_secret=_new_secret(), created_at=utcnow())
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant: str) -> NewKey:
    """A new key for ``tenant`` (created if new)."""
    owner = ensure_tenant(session, tenant)
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, tenant=owner.name, key_hash=hash_key(key), created_at=utcnow()))
    session.flush()
    return NewKey(id=key_id, tenant=owner.name, key=key, webhook_secret=owner.webhook_secret)


def find_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def revoke(session: Session, key_id: str) -> bool:
    """Revoke a key; False if there is no such key or it was already revoked."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def list_keys(session: Session, tenant: str | None = None) -> Sequence[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)
    if tenant is not None:
        statement = statement.where(ApiKey.tenant == tenant)
    return session.scalars(statement).all()


def webhook_secret(session: Session, tenant: str) -> str | None:
    return session.scalar(select(Tenant.webhook_secret).where(Tenant.name == tenant))


def rotate_secret(session: Session, tenant: str) -> str | None:
    """A new webhook secret for ``tenant``; webhooks sent from now on use it."""
    found = session.get(Tenant, tenant)
    if found is None:
        return None
    found.webhook_secret = _new_secret()
    session.flush()
    return found.webhook_secret


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)
