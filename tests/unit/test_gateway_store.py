"""The gateway's tables on SQLite: keys, tenant-scoped reads, webhook claims and retries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from services.gateway.auth import KeyCache
from services.gateway.errors import ApiError
from services.gateway.service import decode_cursor, encode_cursor
from shared import states
from shared.db import keys, repo, tenancy, webhooks
from shared.db.engine import session_scope
from shared.db.models import utcnow
from shared.db.reads import Reader
from shared.errors import InvalidJob
from shared.jobs import FieldProblem, JobSchemaError, parse_job

GOOD = {"task": "text-classification", "model": "tiny-text-classification", "inputs": "hi"}


def _insert(session: Session, *, tenant: str | None, callback: str | None = None) -> str:
    request = parse_job({**GOOD, "callback_url": callback}).with_id()
    repo.insert_job(session, request, inline_limit=1000, tenant=tenant)
    return request.id or ""


def test_callback_urls_are_http_or_https_only() -> None:
    assert parse_job({**GOOD, "callback_url": "https://h.example/x?a=1"}).callback_url
    for bad in ("ftp://h/x", "file:///etc/passwd", "http://", "javascript:alert(1)", "h/x"):
        with pytest.raises(JobSchemaError) as caught:
            parse_job({**GOOD, "callback_url": bad})
        assert [p.location for p in caught.value.problems] == [("callback_url",)]


def test_schema_errors_list_every_field_and_keep_the_old_message() -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_job({"task": "text-classification", "inputs": 1, "priority": 12, "x": 1})
    assert isinstance(caught.value, JobSchemaError)
    locations = {p.location for p in caught.value.problems}
    assert locations == {("model",), ("priority",), ("x",)}
    assert str(caught.value).startswith("invalid job: ")
    with pytest.raises(JobSchemaError) as caught:
        parse_job({**GOOD, "params": {"a": [1.0, float("nan")]}})
    assert caught.value.problems == [
        FieldProblem(("params", "a", 1), "NaN and infinity are not allowed")
    ]


def test_keys_are_stored_hashed_and_checked(db_url: str) -> None:
    with session_scope(db_url) as session:
        made = keys.create_key(session, "acme")
        second = keys.create_key(session, "acme")
    assert made.webhook_secret == second.webhook_secret  # one secret per tenant
    assert keys.key_id_of(made.key) == made.id and keys.key_id_of("pq_nope") is None
    with session_scope(db_url) as session:
        row = keys.find_key(session, made.id)
        assert row is not None and made.key not in row.key_hash
        assert keys.matches(made.key, row.key_hash)
        assert not keys.matches(second.key, row.key_hash)
        assert keys.revoke(session, made.id) and not keys.revoke(session, made.id)
        rotated = keys.rotate_secret(session, "acme")
        assert rotated and rotated != made.webhook_secret
    for bad in ("", "a:b", "-x", "x" * 65, "with space"):
        with pytest.raises(ValueError):
            keys.check_tenant(bad)


def test_the_key_cache_sees_a_revocation_after_its_ttl(db_url: str) -> None:
    now = [0.0]
    cache = KeyCache(Reader(db_url), ttl=5, clock=lambda: now[0])
    with session_scope(db_url) as session:
        made = keys.create_key(session, "acme")
    caller = asyncio.run(cache.resolve(made.key))
    assert caller is not None and caller.tenant == "acme"
    assert asyncio.run(cache.resolve(made.key[:-1] + "x")) is None  # right id, wrong secret
    with session_scope(db_url) as session:
        keys.revoke(session, made.id)
    now[0] = 4.0
    assert asyncio.run(cache.resolve(made.key)) is not None  # still trusted from memory
    now[0] = 6.0
    assert asyncio.run(cache.resolve(made.key)) is None


def test_reads_are_scoped_to_the_tenant_and_paged(db_url: str) -> None:
    with session_scope(db_url) as session:
        mine = [_insert(session, tenant="acme") for _ in range(3)]
        theirs = _insert(session, tenant="globex")
        foreign = _insert(session, tenant=None)
    with session_scope(db_url) as session:
        assert tenancy.get_owned(session, mine[0], "acme") is not None
        assert tenancy.get_owned(session, theirs, "acme") is None
        assert tenancy.get_owned(session, foreign, "acme") is None
        first = tenancy.page(session, "acme", limit=2)
        assert len(first) == 2
        after = (first[-1].created_at, first[-1].id)
        rest = tenancy.page(session, "acme", after=after, limit=2)
        assert {j.id for j in first} | {j.id for j in rest} == set(mine) and len(rest) == 1


def test_tenant_views_match_the_repository_view(db_url: str) -> None:
    with session_scope(db_url) as session:
        queued = _insert(session, tenant="acme")
        ran = _insert(session, tenant="acme")
        failed = _insert(session, tenant="acme")
        cancelled = _insert(session, tenant="acme")
        for job_id in (ran, failed):
            states.start(session, job_id, worker="w")
        states.heartbeat(session, ran, progress={"step": 3})
        states.succeed(session, ran, [{"label": "POSITIVE", "score": 0.9}])
        states.fail(session, failed, error_type="model_failure", message="boom")
        states.cancel(session, cancelled)
    with session_scope(db_url) as session:
        for job_id in (queued, ran, failed, cancelled):
            job = repo.get_job(session, job_id)
            assert job is not None
            assert tenancy.get_owned(session, job_id, "acme") == repo.to_view(job)
            assert repo.get_view(session, job_id) == repo.to_view(job)  # its narrower read


def test_cursors_round_trip_and_junk_is_refused() -> None:
    when = utcnow()
    assert decode_cursor(encode_cursor(when, "abc")) == (when, "abc")
    for junk in ("x", "bm90IGpzb24", encode_cursor(when, "a")[:-3]):
        with pytest.raises(ApiError):
            decode_cursor(junk)


def test_a_webhook_is_due_only_once_its_job_ends_and_one_claim_wins(db_url: str) -> None:
    with session_scope(db_url) as session:
        job_id = _insert(session, tenant="acme", callback="http://127.0.0.1/h")
        no_tenant = _insert(session, tenant=None, callback="http://127.0.0.1/h")
    lease = timedelta(seconds=30)
    with session_scope(db_url) as session:
        assert webhooks.due(session, now=utcnow()) == []  # queued: nothing to send
        assert webhooks.get(session, no_tenant) is None  # no tenant, no secret, no webhook
        states.cancel(session, job_id)
    now = utcnow()
    with session_scope(db_url) as session:
        assert webhooks.due(session, now=now) == [job_id]
        assert webhooks.claim(session, job_id, now=now, lease=lease) == 1
        assert webhooks.claim(session, job_id, now=now, lease=lease) is None  # the loser
        assert webhooks.due(session, now=now) == []  # leased
    later = now + lease + timedelta(seconds=1)
    with session_scope(db_url) as session:  # the claimer died: the lease ends, it is due again
        assert webhooks.due(session, now=later) == [job_id]


def test_attempts_are_recorded_until_delivered_or_failed(db_url: str) -> None:
    with session_scope(db_url) as session:
        job_id = _insert(session, tenant="acme", callback="http://127.0.0.1/h")
        states.cancel(session, job_id)
    with session_scope(db_url) as session:
        retry = utcnow() + timedelta(seconds=60)
        state = webhooks.record(
            session,
            job_id,
            attempt=1,
            status_code=500,
            error="HTTP 500",
            duration_ms=3,
            retry_at=retry,
        )
        assert state is webhooks.WebhookState.PENDING
        assert webhooks.due(session, now=utcnow()) == []  # backing off
        state = webhooks.record(
            session,
            job_id,
            attempt=2,
            status_code=None,
            error="ConnectError",
            duration_ms=1,
            retry_at=None,
        )
        assert state is webhooks.WebhookState.FAILED
        assert [d.status_code for d in webhooks.deliveries(session, job_id)] == [500, None]
        hook = webhooks.get(session, job_id)
        assert hook is not None and hook.state == "FAILED"
