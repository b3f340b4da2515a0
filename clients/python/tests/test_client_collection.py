"""Click-and-collect through the client: stores, a chosen pick-up time, and the mirror."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env
from tests.support.stores import write_stores

from cartsync_client import CartMirror, CartsyncClient, Collection, InvalidRequest
from client_testkit import FAST


@pytest.fixture(scope="module")
def shop(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    data: Path = tmp_path_factory.mktemp("collect")
    env = service_env(redis_server.url, data, CARTSYNC_STORES_FILE=str(write_stores(data)))
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_chosen_store_and_time_reach_the_mirror_and_checkout(
    shop: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with CartsyncClient(shop.url, token, backoff=FAST) as me:
        stores = {s.id: s for s in await me.list_stores()}
        oslo = stores["oslo-sentrum"]
        assert (oslo.name, oslo.timezone, oslo.slot_minutes) == ("Oslo Sentrum", "Europe/Oslo", 15)
        slot = oslo.next_slots[0]
        await me.add_line("MUG-1")
        async with me.subscribe(backoff=FAST) as live:
            mirror = CartMirror()
            mirror.apply(await asyncio.wait_for(anext(live), 10))
            result = await me.set_collection("oslo-sentrum", slot)
            chosen = Collection("oslo-sentrum", "Oslo Sentrum", slot, ready=False)
            assert (result.rev, result.collection) == (2, chosen)
            await me.set_collection(ready=True)
            while mirror.rev < 3:
                mirror.apply(await asyncio.wait_for(anext(live), 10))
            assert mirror.collection == Collection("oslo-sentrum", "Oslo Sentrum", slot, True)
            assert mirror.ready_for_collection
            assert mirror.agrees_with(await me.get_cart())

        with pytest.raises(InvalidRequest) as bad:
            await me.set_collection("oslo-sentrum", "tomorrow at three")
        assert (bad.value.status, bad.value.code, bad.value.field) == (
            422,
            "invalid_pickup",
            "pickup_at",
        )
        checkout = (await me.checkout()).checkout
        assert checkout.collection == Collection("oslo-sentrum", "Oslo Sentrum", slot, True)
        assert (await me.get_cart()).collection == Collection()
        assert (await me.set_collection(None)).collection == Collection()
