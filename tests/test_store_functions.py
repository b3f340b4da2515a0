"""The store's Lua as a Redis Function library (storage/scripts.py): loaded once, loaded again
when a node lost it, and the EVALSHA fallback (Redis 6.2) answering exactly like it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.domain.model import Actor, line_key
from cartsync.domain.principal import Owner, Role
from cartsync.settings import Settings
from cartsync.storage.connection import connect
from cartsync.storage.keys import OwnerKeys
from cartsync.storage.scripts import LIBRARY
from cartsync.storage.store import CartStore, Mutation, WriteContext
from tests.support.cart_store import cart_store
from tests.support.processes import RedisProcess
from tests.support.topologies import RedisCluster3


def _store(client: Redis | RedisCluster, *, functions: bool = True) -> CartStore:
    return cart_store(client, functions=functions)


def _client(url: str, *, cluster: bool = False) -> Redis | RedisCluster:
    env = {"CARTSYNC_REDIS_URL": url, "CARTSYNC_DATA_DIR": "/x"}
    if cluster:
        env["CARTSYNC_REDIS_CLUSTER"] = "true"
    return connect(Settings.from_env(env))


def _owner() -> tuple[Owner, WriteContext]:
    owner = Owner(Role.CUSTOMER, f"fn-{uuid.uuid4().hex[:12]}")
    return owner, WriteContext(Actor(role="customer", id=owner.subject, device="d"))


async def _add(store: CartStore, owner: Owner, ctx: WriteContext, sku: str) -> Mutation:
    payload = {"sku": sku, "qty": 1, "attrs": {}, "key": line_key(sku, {})}
    return await store.mutate(owner, "line_add", payload, ctx)


def _calls(node: redis.Redis, command: str) -> int:
    """Calls of ``command`` that ran (not the ones answered NOSCRIPT or "Function not found")."""
    stats: dict[str, Any] = node.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


def _libraries(node: redis.Redis) -> list[str]:
    """FUNCTION LIST's library names (each library a flat list of name, value, ...)."""
    return [
        dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"].decode()
        for lib in node.function_list()
    ]


@pytest.fixture
async def redis_client(private_redis: RedisProcess) -> AsyncIterator[Redis | RedisCluster]:
    c = _client(private_redis.url)
    try:
        yield c
    finally:
        await c.aclose()


async def test_a_change_calls_the_library_loaded_once(
    private_redis: RedisProcess, redis_client: Redis
) -> None:
    store = _store(redis_client)
    owner, ctx = _owner()
    node = private_redis.client()
    assert (await _add(store, owner, ctx, "A")).rev == 1
    assert (await _add(store, owner, ctx, "B")).rev == 2
    assert (await store.snapshot(owner)).rev == 2
    assert _libraries(node) == [LIBRARY]
    assert re.fullmatch(r"cartsync_[0-9a-f]{12}", LIBRARY)
    # Two changes and a read, all by FCALL; the library was loaded once.
    assert _calls(node, "fcall") == 3
    assert _calls(node, "function|load") == 1
    assert _calls(node, "evalsha") == _calls(node, "eval") == 0


async def test_after_function_flush_a_change_is_applied_exactly_once(
    private_redis: RedisProcess, redis_client: Redis
) -> None:
    store = _store(redis_client)
    owner, ctx = _owner()
    assert (await _add(store, owner, ctx, "A")).rev == 1
    node = private_redis.client()
    node.function_flush()
    assert _libraries(node) == []

    done = await _add(store, owner, ctx, "B")  # "Function not found": loaded again, sent again

    assert (done.status, done.rev, done.replayed) == (201, 2, False)
    assert _calls(node, "function|load") == 2
    assert _libraries(node) == [LIBRARY]
    snap = await store.snapshot(owner, "all")
    assert snap.rev == 2
    assert [line.sku for line in snap.cart.lines] == ["A", "B"]
    assert [e.rev for e in snap.events] == [1, 2]


async def test_a_library_of_another_version_is_left_alone(
    private_redis: RedisProcess, redis_client: Redis
) -> None:
    """A rolling deploy: the other version's library stays, and each calls its own."""
    node = private_redis.client()
    other = "cartsync_000000000000"
    node.function_load(
        f"#!lua name={other}\n"
        f"redis.register_function('{other}_mutate', function(keys, args) return 1 end)"
    )
    store = _store(redis_client)
    owner, ctx = _owner()
    assert (await _add(store, owner, ctx, "A")).rev == 1
    assert sorted(_libraries(node)) == sorted([other, LIBRARY])


async def test_the_evalsha_fallback_answers_like_the_library(
    private_redis: RedisProcess, redis_client: Redis
) -> None:
    node = private_redis.client()
    answers: dict[bool, list[Any]] = {}
    for functions in (True, False):
        store = _store(redis_client, functions=functions)
        owner, ctx = _owner()
        seen: list[Any] = []
        first = await _add(store, owner, ctx, "A")
        line = json.loads(first.body)["line"]["id"]
        steps = [
            await _add(store, owner, ctx, "A"),
            await store.mutate(owner, "line_update", {"line_id": line, "qty": 5}, ctx),
            await store.mutate(owner, "note_set", {"note": "gift"}, ctx),
            await store.mutate(
                owner, "wishlist_create", {"name": "Gifts", "name_key": "gifts"}, ctx
            ),
        ]
        for step in [first, *steps]:
            body = json.loads(step.body)
            seen.append((step.status, step.rev, sorted(body), body.get("line", {}).get("qty")))
        snap = await store.snapshot(owner, "all")
        seen.append((snap.rev, [(x.sku, x.qty) for x in snap.cart.lines], snap.cart.note))
        seen.append([(e.rev, e.type) for e in snap.events])
        seen.append(sorted(w.name for w in snap.wishlists))
        answers[functions] = seen
    assert answers[False] == answers[True]
    assert answers[True][-2][-1] == (5, "wishlist.created")
    # Each store called its Lua its own way: five changes and a read each.
    assert _calls(node, "fcall") == 6
    assert _calls(node, "evalsha") == 6
    assert _libraries(node) == [LIBRARY]  # loaded by the first store only


# Cluster --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    with RedisCluster3(tmp_path_factory.mktemp("functions-cluster")) as nodes:
        yield nodes


def _owner_on(cluster: RedisCluster3, port: int) -> tuple[Owner, WriteContext]:
    """A fresh owner whose keys live on the master at ``port``."""
    for _ in range(1000):
        owner, ctx = _owner()
        if cluster.owner_of(cluster.keyslot(OwnerKeys(owner.id).meta)) == port:
            return owner, ctx
    raise AssertionError(f"no owner found on {port}")


@pytest.mark.slow
async def test_on_a_cluster_every_master_has_the_library_and_a_lost_one_is_reloaded(
    cluster: RedisCluster3,
) -> None:
    for port in cluster.ports:
        cluster.client(port).function_flush()
        cluster.client(port).config_resetstat()
    client = _client(cluster.seed_url, cluster=True)
    try:
        store = _store(client)
        # A fresh cluster: one change on each master.
        owners = {port: _owner_on(cluster, port) for port in cluster.ports}
        for owner, ctx in owners.values():
            assert (await _add(store, owner, ctx, "A")).rev == 1
        for port in cluster.ports:
            assert _libraries(cluster.client(port)) == [LIBRARY]
        # One master loses it (restarted without persistence, FUNCTION FLUSH): the next change
        # there loads it again and is applied once.
        lost = cluster.ports[1]
        cluster.client(lost).function_flush()
        owner, ctx = owners[lost]
        done = await _add(store, owner, ctx, "B")
        assert (done.status, done.rev, done.replayed) == (201, 2, False)
        assert _libraries(cluster.client(lost)) == [LIBRARY]
        assert [e.rev for e in (await store.snapshot(owner, "all")).events] == [1, 2]
        for other, (owner, ctx) in owners.items():
            if other != lost:
                assert (await _add(store, owner, ctx, "C")).rev == 2
        # Each FCALL went straight to its owner's master: no node was asked for its keys
        # (COMMAND GETKEYS, a round trip more per change, storage/connection.py).
        assert sum(_calls(cluster.client(port), "command|getkeys") for port in cluster.ports) == 0
    finally:
        await client.aclose()
