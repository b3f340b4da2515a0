"""A newer server: an event type this client does not know ends in a snapshot, never an error."""

from __future__ import annotations

import asyncio

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess

from cartsync_client import CartMirror, CartsyncClient, Event, Snapshot, Update
from client_testkit import FAST


async def test_an_unknown_event_type_ends_in_a_snapshot_of_the_server_state(
    service: ServiceProcess, redis_server: RedisProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        CartsyncClient(service.url, token, device_id="phone", backoff=FAST) as phone,
        phone.subscribe(backoff=FAST) as live,
    ):
        mirror = CartMirror()
        mirror.apply(await asyncio.wait_for(anext(live), 10))
        await phone.add_line("CAP-1", qty=2)
        unknown_rev = await asyncio.to_thread(
            redis_server.append_event, f"c:{customer_id}", "cart.gift_wrapped", '{"paper":"red"}'
        )
        note = await phone.set_note("after the new kind of event")
        updates: list[Update] = []
        async with asyncio.timeout(20):
            while mirror.rev < note.rev:
                update = await anext(live)
                updates.append(update)
                mirror.apply(update)  # raises MirrorError on a type it cannot apply
        cart = await phone.get_cart()
        wishlists = (await phone.list_wishlists()).wishlists
    assert (unknown_rev, note.rev) == (2, 3)
    assert [u.type for u in updates if isinstance(u, Event)][:1] == ["line.added"]
    assert "cart.gift_wrapped" not in {u.type for u in updates if isinstance(u, Event)}
    assert any(isinstance(u, Snapshot) and u.rev >= unknown_rev for u in updates)
    assert mirror.agrees_with(cart, wishlists)
    assert (mirror.note, [line.sku for line in mirror.lines]) == (note.note, ["CAP-1"])
    assert live.connections == 1  # one socket: the snapshot came without reconnecting
