"""Idempotency records as the mutation script stores them (entry.lua): any fingerprint and body
come back whole, and records written in the earlier JSON format are still replayed."""

from __future__ import annotations

import json
import uuid

import pytest

from cartsync.domain.model import Actor, line_key
from cartsync.domain.principal import Owner, Role
from cartsync.errors import IdempotencyKeyReused
from cartsync.settings import Settings
from cartsync.storage.connection import connect
from cartsync.storage.keys import OwnerKeys
from cartsync.storage.store import CartStore, WriteContext
from tests.support.cart_store import cart_store
from tests.support.processes import RedisProcess


def _store(redis_url: str) -> CartStore:
    settings = Settings.from_env(
        {"CARTSYNC_REDIS_URL": redis_url, "CARTSYNC_DATA_DIR": "/nonexistent"}
    )
    return cart_store(connect(settings), settings)


async def test_a_fingerprint_and_body_with_separators_replay_whole(
    redis_server: RedisProcess,
) -> None:
    store = _store(redis_server.url)
    owner = Owner(Role.CUSTOMER, f"rec-{uuid.uuid4().hex}")
    actor = Actor(role="customer", id=owner.subject, device="d")
    sku = "A|1|2|"  # the body holds the record's separator too
    payload = {"sku": sku, "qty": 1, "key": line_key(sku, {})}
    ctx = WriteContext(actor, idempotency_key="k-1", fingerprint="fp|with|bars|")
    try:
        first = await store.mutate(owner, "line_add", payload, ctx)
        again = await store.mutate(owner, "line_add", payload, ctx)
        assert (again.status, again.rev, again.body) == (first.status, first.rev, first.body)
        assert again.replayed
        assert not first.replayed
        assert json.loads(again.body)["line"]["sku"] == sku
        other = WriteContext(actor, idempotency_key="k-1", fingerprint="fp|with|bars")
        with pytest.raises(IdempotencyKeyReused):  # one character shorter is another request
            await store.mutate(owner, "line_add", payload, other)
    finally:
        await store.redis.aclose()


async def test_a_record_in_the_earlier_json_format_is_replayed(redis_server: RedisProcess) -> None:
    store = _store(redis_server.url)
    owner = Owner(Role.CUSTOMER, f"rec-{uuid.uuid4().hex}")
    actor = Actor(role="customer", id=owner.subject, device="d")
    payload = {"sku": "B", "qty": 1, "key": line_key("B", {})}
    ctx = WriteContext(actor, idempotency_key="old", fingerprint="f" * 64)
    op_id = f"k:customer:{owner.subject}:old"
    body = '{"rev":7,"line":{"id":"L3","sku":"B","qty":1}}'
    legacy = json.dumps({"fp": "f" * 64, "status": 201, "body": body, "rev": 7})
    try:
        await store.redis.hset(OwnerKeys(owner.id).idempotency, op_id, legacy)
        replayed = await store.mutate(owner, "line_add", payload, ctx)
        assert (replayed.status, replayed.rev, replayed.body, replayed.replayed) == (
            201,
            7,
            body.encode(),
            True,
        )
        assert await store.revision(owner) == 0  # replayed, not applied
    finally:
        await store.redis.aclose()
