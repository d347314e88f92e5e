"""Who is calling: ``Authorization: Bearer <key>`` to a tenant, or 401.

Keys are looked up by their public id and checked against the stored SHA-256
(:mod:`shared.db.keys`). A process remembers a looked-up key for
``PIPEQ_KEY_CACHE_SECONDS`` (5 s by default), so a busy client costs one
database read per key per few seconds rather than one per request; the price
is that a revoked key keeps working for up to that long in a process that has
just seen it. Unknown key ids are never cached (a flood of junk keys cannot
fill memory), and a malformed key is refused without touching the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from services.gateway.errors import unauthorized
from shared.db import keys
from shared.db.reads import Reader


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str


@dataclass(frozen=True)
class _Entry:
    key_hash: str
    tenant: str
    revoked: bool
    expires: float


class KeyCache:
    """API keys this process has looked up recently (see the module docstring)."""

    MAX_ENTRIES = 10_000

    def __init__(
        self, reader: Reader, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reader = reader
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    async def resolve(self, key: str) -> Caller | None:
        """:meth:`lookup`, answered from memory when the key was seen lately."""
        key_id = keys.key_id_of(key)
        if key_id is None:
            return None
        entry = self._entries.get(key_id)
        if entry is None or entry.expires < self.clock():
            return await run_in_threadpool(self.lookup, key)
        return self._check(key, key_id, entry)

    def lookup(self, key: str) -> Caller | None:
        """The caller that ``key`` belongs to, or None (unknown, revoked, or wrong secret)."""
        key_id = keys.key_id_of(key)
        if key_id is None:
            return None
        row = self.reader.read(lambda session: keys.find_key(session, key_id))
        if row is None:
            return None
        entry = _Entry(
            row.key_hash, row.tenant, row.revoked_at is not None, self.clock() + self.ttl
        )
        if self.ttl > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_id] = entry
        return self._check(key, key_id, entry)

    @staticmethod
    def _check(key: str, key_id: str, entry: _Entry) -> Caller | None:
        if entry.revoked or not keys.matches(key, entry.key_hash):
            return None
        return Caller(tenant=entry.tenant, key_id=key_id)


class ApiKeyAuth(HTTPBearer):
    """The dependency every /v1 route takes: the caller, or 401.

    One security dependency (it also documents the scheme in OpenAPI) rather
    than a bearer dependency plus a lookup: each FastAPI dependency costs a
    measurable slice of a status query.
    """

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise unauthorized("an API key is required: Authorization: Bearer <key>")
        cache: KeyCache = request.app.state.gateway.keys
        found = await cache.resolve(credentials.credentials)
        if found is None:
            raise unauthorized("invalid or revoked API key")
        return found


authenticated = ApiKeyAuth(auto_error=False, description="An API key from `pipeq keys create`.")
