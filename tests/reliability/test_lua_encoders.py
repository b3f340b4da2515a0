"""What Python hands the Lua scripts reaches them as the integers Redis expects.

Lua numbers are doubles, and ``tostring`` or ``..`` write 10^14 + 1 as ``1e+14``: a stream id
Redis refuses, a revision in an event or idempotency record that no longer reads back. Every
revision and ``since`` the edge admits (0..2^53-1) must round-trip exactly through the scripts
of a real redis-server.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from cartsync.domain.limits import Limits
from cartsync.domain.merge import MergeStrategy
from cartsync.domain.model import Actor
from cartsync.domain.principal import Owner, Role
from cartsync.errors import RevisionMismatch
from cartsync.storage.keys import OwnerKeys
from cartsync.storage.store import CartStore, WriteContext
from cartsync.wire import MAX_REVISION
from tests.support.processes import RedisProcess

pytestmark = pytest.mark.reliability
T = TypeVar("T")

EDGES = [0, 1, 10**14 - 1, 10**14, 10**14 + 1, 10**15, 2**52, MAX_REVISION - 2]
REVISIONS = st.one_of(
    st.sampled_from(EDGES),
    st.integers(10**13, MAX_REVISION - 2),  # where %.14g starts to round
    st.integers(0, MAX_REVISION - 2),
)
SINCE = st.one_of(
    st.sampled_from([*EDGES, MAX_REVISION - 1, MAX_REVISION]), st.integers(0, MAX_REVISION)
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Harness:
    """One event loop and one CartStore for a module's examples (a loop per example is slow)."""

    def __init__(self, server: RedisProcess) -> None:
        self.runner = asyncio.Runner()
        self.redis: Redis = self.run(self._connect(server.url))
        self.store = CartStore(
            self.redis,
            limits=Limits(),
            currency="EUR",
            event_log_max=1000,
            idempotency_ttl_s=600,
            guest_ttl_s=600,
            customer_ttl_s=600,
            publish_command="",
        )

    @staticmethod
    async def _connect(url: str) -> Redis:
        return Redis.from_url(url)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(asyncio.wait_for(coro, 10))

    def close(self) -> None:
        self.run(self.redis.aclose())
        self.runner.close()


@pytest.fixture(scope="module")
def harness(redis_server: RedisProcess) -> Iterator[Harness]:
    h = Harness(redis_server)
    try:
        yield h
    finally:
        h.close()


def fresh(role: Role = Role.CUSTOMER) -> tuple[Owner, Actor]:
    owner = Owner(role, f"lua-{uuid.uuid4().hex[:16]}")
    return owner, Actor(role=role.value, id=owner.subject)


async def at_revision(h: Harness, owner: Owner, rev: int) -> None:
    """An owner whose revision counter stands at ``rev``: what years of changes would leave."""
    await h.redis.hset(OwnerKeys(owner.id).meta, mapping={"rev": str(rev), "epoch": "e"})
    await h.redis.expire(OwnerKeys(owner.id).meta, 600)


@pytest.fixture(scope="module")
def three_events(harness: Harness) -> Owner:
    owner, actor = fresh()
    for sku in ("A", "B", "C"):
        harness.run(harness.store.mutate(owner, "line_add", add(sku), WriteContext(actor)))
    return owner


def add(sku: str, qty: int = 1) -> dict[str, Any]:
    return {"sku": sku, "qty": qty, "attrs": {}, "key": sku, "attrs_key": ""}


@FAST
@given(since=SINCE, limit=st.integers(1, 1000))
def test_history_answers_for_every_since_up_to_the_cap(
    harness: Harness, three_events: Owner, since: int, limit: int
) -> None:
    snap = harness.run(harness.store.history(three_events, since, limit))
    assert snap.rev == 3
    assert [e.rev for e in snap.events] == list(range(since + 1, 4))[:limit]
    assert snap.log_first == 1


@FAST
@given(start=REVISIONS, qty=st.integers(1, 999))
def test_large_revisions_round_trip_exactly(harness: Harness, start: int, qty: int) -> None:
    owner, actor = fresh()
    store = harness.store
    harness.run(at_revision(harness, owner, start))
    key = f"k-{uuid.uuid4().hex}"
    ctx = WriteContext(actor, idempotency_key=key, fingerprint="fp", expected_rev=start)
    done = harness.run(store.mutate(owner, "line_add", add("A", qty), ctx))
    assert done.rev == start + 1
    assert json.loads(done.body)["rev"] == start + 1
    # The stream id, the event and a history read from just below it.
    ((stream_id, _),) = harness.run(harness.redis.xrange(OwnerKeys(owner.id).log))
    assert stream_id == f"{start + 1}-0".encode()
    snap = harness.run(store.history(owner, start, 10))
    assert [(e.rev, e.type) for e in snap.events] == [(start + 1, "line.added")]
    assert snap.log_first == start + 1
    # The idempotency record replays the same revision, not a rounded one.
    again = harness.run(store.mutate(owner, "line_add", add("A", qty), ctx))
    assert (again.replayed, again.rev, again.body) == (True, start + 1, done.body)
    # A stale If-Match names the exact current revision.
    with pytest.raises(RevisionMismatch) as refused:
        harness.run(
            store.mutate(owner, "line_add", add("B"), WriteContext(actor, expected_rev=start))
        )
    assert refused.value.current_rev == start + 1
    assert str(start + 1) in refused.value.message


@FAST
@given(start=REVISIONS)
def test_a_guest_at_a_large_revision_merges(harness: Harness, start: int) -> None:
    """The merge claim records the guest's revision in JSON: cjson would round it."""
    guest, _ = fresh(Role.GUEST)
    customer, actor = fresh()
    harness.run(at_revision(harness, guest, start))
    report = harness.run(harness.store.merge(customer, guest, MergeStrategy.SUM, actor))
    assert report.already_merged is False
