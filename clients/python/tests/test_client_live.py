"""Live updates over the websocket: order, resumption across a service restart, and ops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

from cartsync_client import (
    CartMirror,
    CartsyncClient,
    Event,
    NotFound,
    PreconditionFailed,
    SessionClosed,
    Snapshot,
    Subscription,
    Unavailable,
)
from client_testkit import FAST, follow


def _client(url: str, token: str, device: str) -> CartsyncClient:
    return CartsyncClient(url, token, device_id=device, backoff=FAST)


@contextlib.asynccontextmanager
async def phone_and_laptop(
    service: ServiceProcess, redis: RedisProcess, token: str, data_dir: Path
) -> AsyncIterator[tuple[CartsyncClient, Subscription, ServiceProcess]]:
    """The phone on ``service``; the laptop subscribed on an instance of its own, which the
    test may stop and start again (on the same port)."""
    instance = ServiceProcess(service_env(redis.url, data_dir)).start()
    try:
        async with (
            _client(service.url, token, "phone") as phone,
            _client(instance.url, token, "laptop") as laptop,
            laptop.subscribe(backoff=FAST) as live,
        ):
            yield phone, live, instance
    finally:
        instance.stop()


async def test_events_from_another_device_arrive_in_order(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        _client(service.url, token, "phone") as a,
        _client(service.url, token, "laptop") as b,
        b.subscribe(backoff=FAST) as live,
    ):
        first = await asyncio.wait_for(anext(live), 10)
        assert isinstance(first, Snapshot)
        assert (first.rev, first.cart.lines) == (0, [])

        cap = await a.add_line("CAP-1", qty=1)
        await a.add_line("MUG-1", qty=2, title="Mug")
        await a.patch_line(cap.line.id, qty=3)
        await a.set_note("leave at the door")
        await a.add_item("default", "BOOK-1")
        await a.remove_line(cap.line.id)

        events: list[Event] = []
        async with asyncio.timeout(20):
            while len(events) < 6:
                update = await anext(live)
                assert isinstance(update, Event)
                events.append(update)
        assert live.rev == 6
    assert [e.rev for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in events] == [
        "line.added",
        "line.added",
        "line.updated",
        "cart.note_set",
        "wishlist.item_added",
        "line.removed",
    ]
    assert {e.actor.device for e in events} == {"phone"}
    assert events[2].data["line"]["qty"] == 3
    assert events[5].data == {"line_id": cap.line.id}


async def test_subscribe_since_starts_after_that_revision(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with _client(service.url, token, "phone") as a:
        for sku in ("A-1", "B-1", "C-1"):
            await a.add_line(sku)
        async with a.subscribe(since=1, backoff=FAST) as live:
            async with asyncio.timeout(10):
                got = [await anext(live), await anext(live)]
    assert [(u.rev, type(u).__name__) for u in got] == [(2, "Event"), (3, "Event")]
    assert [u.data["line"]["sku"] for u in got if isinstance(u, Event)] == ["B-1", "C-1"]


async def test_send_op_acks_nacks_and_shares_keys_with_rest(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with _client(service.url, token, "phone") as c, c.subscribe(backoff=FAST) as live:
        ack = await asyncio.wait_for(
            live.send_op("add_line", body={"sku": "CAP-1", "qty": 2}, op_id="op-cap-1"), 10
        )
        assert (ack.id, ack.rev, ack.status, ack.replayed) == ("op-cap-1", 1, 201, False)
        assert ack.result["line"]["qty"] == 2

        again = await asyncio.wait_for(
            live.send_op("add_line", body={"sku": "CAP-1", "qty": 2}, op_id="op-cap-1"), 10
        )
        assert (again.rev, again.replayed) == (1, True)
        over_rest = await c.add_line("CAP-1", qty=2, idempotency_key="op-cap-1")
        assert over_rest.rev == 1  # the same change: replayed, not applied again

        line_id = ack.result["line"]["id"]
        patched = await asyncio.wait_for(
            live.send_op("patch_line", {"line_id": line_id}, {"qty": 5}, if_match=1), 10
        )
        assert patched.result["line"]["qty"] == 5

        with pytest.raises(NotFound) as missing:
            await asyncio.wait_for(live.send_op("remove_line", {"line_id": "L999"}), 10)
        assert (missing.value.code, missing.value.field) == ("line_not_found", "line_id")
        with pytest.raises(PreconditionFailed) as stale:
            await asyncio.wait_for(live.send_op("set_note", body={"note": "x"}, if_match=1), 10)
        assert stale.value.current_rev == 2

        mirror = CartMirror()
        await follow(live, mirror, 2)
        cart = await c.get_cart()
    assert mirror.agrees_with(cart)
    assert [(x.sku, x.qty) for x in cart.lines] == [("CAP-1", 5)]


async def test_refused_token_raises_instead_of_reconnecting(
    service: ServiceProcess, tokens: Tokens
) -> None:
    async with (
        CartsyncClient(service.url, "not.a.token", backoff=FAST) as c,
        c.subscribe(backoff=FAST) as live,
    ):
        with pytest.raises(SessionClosed) as caught:
            await asyncio.wait_for(anext(live), 10)
        assert caught.value.close_code == 1008
        with pytest.raises(SessionClosed):
            await live.send_op("clear_cart")
    service_token = tokens.token("service", "svc")
    async with (
        CartsyncClient(service.url, service_token, backoff=FAST) as c,
        c.subscribe() as live,
    ):
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(anext(live), 10)


async def test_closing_fails_waiting_ops(service: ServiceProcess, tokens: Tokens) -> None:
    """An op whose answer never came raises Unavailable with its key, to resend it later."""
    token = tokens.token("customer", "closer")
    async with _client(service.url, token, "phone") as c:
        live = c.subscribe(backoff=FAST)
        async with live:
            pending = asyncio.create_task(live.send_op("clear_cart", op_id="op-late"))
            await asyncio.sleep(0)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(pending, 10)
        with pytest.raises(StopAsyncIteration):
            await anext(live)


@pytest.mark.slow
async def test_resumes_after_service_restart_without_gap_or_duplicate(
    service: ServiceProcess,
    redis_server: RedisProcess,
    tokens: Tokens,
    customer_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    token = tokens.token("customer", customer_id)
    data_dir = tmp_path_factory.mktemp("restarted")
    async with phone_and_laptop(service, redis_server, token, data_dir) as (a, live, instance):
        mirror = CartMirror()
        revs: list[int] = []

        async def take(until: int) -> None:
            async with asyncio.timeout(30):
                while mirror.rev < until:
                    update = await anext(live)
                    if isinstance(update, Event):
                        revs.append(update.rev)
                    mirror.apply(update)

        first = await asyncio.wait_for(anext(live), 10)
        assert isinstance(first, Snapshot)
        assert first.rev == 0
        mirror.apply(first)
        mug = await a.add_line("MUG-1")
        await a.add_line("CAP-1", qty=2)
        await take(2)
        assert live.connections == 1

        instance.stop()  # closes live sockets with 1001, then exits
        # Changes made through another instance while this one is down.
        await a.patch_line(mug.line.id, qty=4)
        await a.create_wishlist("Later")
        # An op sent while disconnected waits, and is sent once the socket is back.
        note = asyncio.create_task(
            live.send_op("set_note", body={"note": "while away"}, op_id="op-away")
        )
        await a.add_item("default", "BOOK-1")

        instance.start()  # on the same port
        ack = await asyncio.wait_for(note, 30)
        final = (await a.get_cart()).rev
        await take(final)
        cart = await a.get_cart()
        wishlists = await a.list_wishlists()
        history = await a.history()
    assert final == 6
    assert revs == list(range(1, final + 1))  # each revision exactly once, in order
    assert live.connections >= 2
    assert (ack.id, ack.replayed) == ("op-away", False)
    assert [e.type for e in history.events].count("cart.note_set") == 1
    assert mirror.agrees_with(cart, wishlists.wishlists)
    assert cart.note == "while away"


@pytest.mark.slow
async def test_answers_server_pings_and_stays_connected(
    redis_server: RedisProcess,
    tokens: Tokens,
    customer_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The server closes a socket it has not heard from in three ping intervals; pongs count."""
    env = service_env(
        redis_server.url,
        tmp_path_factory.mktemp("pings"),
        CARTSYNC_WS_PING_INTERVAL_SECONDS="0.1",
    )
    proc = ServiceProcess(env).start()
    token = tokens.token("customer", customer_id)
    try:
        async with _client(proc.url, token, "laptop") as c, c.subscribe(backoff=FAST) as live:
            mirror = CartMirror()
            mirror.apply(await asyncio.wait_for(anext(live), 10))
            for i in range(10):  # ~20 ping intervals pass while changes come and go
                await c.add_line(f"SKU-{i}")
                await asyncio.sleep(0.2)
            await follow(live, mirror, 10)
            cart = await c.get_cart()
    finally:
        proc.stop()
    assert live.connections == 1  # never dropped for silence
    assert mirror.agrees_with(cart)


async def test_resuming_where_a_failover_lost_changes_gets_a_snapshot(
    service: ServiceProcess,
    redis_server: RedisProcess,
    tokens: Tokens,
    customer_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The laptop saw revision 3; a failover lost it and the next change took number 3. The
    client resumes with when its revision 3 was made, so the server knows to send a snapshot
    rather than revision 4 on top of a change that no longer exists."""
    token = tokens.token("customer", customer_id)
    data_dir = tmp_path_factory.mktemp("failover")
    async with phone_and_laptop(service, redis_server, token, data_dir) as (a, live, instance):
        mirror = CartMirror()
        mirror.apply(await asyncio.wait_for(anext(live), 10))
        await a.add_line("KEPT-1")
        await a.add_line("KEPT-2")
        back_to_2 = redis_server.save_owner(f"c:{customer_id}")
        await a.add_line("LOST-3")
        async with asyncio.timeout(30):
            while mirror.rev < 3:
                mirror.apply(await anext(live))

        instance.stop()
        back_to_2()  # the promoted replica never had revision 3
        await a.add_line("NEW-3")
        await a.add_line("NEW-4")
        instance.start()

        resumed = await asyncio.wait_for(anext(live), 30)
        mirror.apply(resumed)
        cart = await a.get_cart()
        wishlists = await a.list_wishlists()
    assert isinstance(resumed, Snapshot), f"deltas on a lost revision: {resumed}"
    assert resumed.rev == cart.rev == 4
    assert [x.sku for x in cart.lines] == ["KEPT-1", "KEPT-2", "NEW-3", "NEW-4"]
    assert mirror.agrees_with(cart, wishlists.wishlists)
