"""Deadline events (abandoned, expiring, expired), what re-arms and what silences them, and
erasure as a customer's last event; real Redis, service, worker and receiver."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.events import (
    SECRET,
    Receiver,
    events_env,
    eventually,
    receiving,
    start_service,
    start_worker,
    webhooks_file,
)
from tests.support.processes import RedisProcess, free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def test_deadlines_fire_once_per_idle_period_and_never_after_checkout_or_for_guests(
    private_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    receiver = Receiver(free_port())
    hooks = webhooks_file(tmp_path, {"name": "crm", "url": receiver.url, "secret": SECRET})
    env = events_env(
        hooks,
        CARTSYNC_ABANDONED_AFTER_SECONDS="2",
        CARTSYNC_CUSTOMER_TTL_SECONDS="12",
        CARTSYNC_GUEST_TTL_DAYS="1",
        CARTSYNC_EXPIRY_NOTICE_SECONDS="5",
    )
    service = start_service(private_redis, tmp_path, env)
    worker = start_worker(private_redis, tmp_path, env)
    idle, buyer, leaver = (f"cust-{uuid.uuid4().hex[:8]}" for _ in range(3))
    try:
        async with (
            receiving(receiver),
            httpx.AsyncClient(base_url=service.url, timeout=10) as http,
        ):

            async def add(who: dict[str, str], sku: str) -> None:
                r = await http.post("/v1/cart/lines", headers=who, json={"sku": sku})
                assert r.status_code in (200, 201), r.text

            guest = (await http.post("/v1/guest")).json()["token"]
            await add({"Authorization": f"Bearer {guest}"}, "GUEST-1")
            await add(tokens.headers("customer", buyer), "BUY-1")
            r = await http.post("/v1/cart/checkout", headers=tokens.headers("customer", buyer))
            assert r.status_code == 200
            await add(tokens.headers("customer", leaver), "GONE-1")
            r = await http.delete("/v1/me", headers=tokens.headers("customer", leaver))
            assert r.status_code == 200

            await add(tokens.headers("customer", idle), "IDLE-1")

            def of(owner: str) -> list[str]:
                return [e["type"] for e in receiver.by_owner().get(f"c:{owner}", [])]

            await eventually(lambda: of(idle) == ["cart.abandoned"], "abandoned after 2 s", 15)
            await asyncio.sleep(1.5)  # still idle: no second notice for the same period
            assert of(idle) == ["cart.abandoned"]  # expiring comes 7 s after the change
            await add(tokens.headers("customer", idle), "IDLE-2")  # re-arms every deadline
            await eventually(
                lambda: of(idle)[:2] == ["cart.abandoned", "cart.abandoned"],
                "abandoned again after the change",
                15,
            )
            await eventually(lambda: "cart.expired" in of(idle), "expired at its TTL", 30)
        events = receiver.by_owner()[f"c:{idle}"]
        assert [e["type"] for e in events] == [
            "cart.abandoned",
            "cart.abandoned",
            "cart.expiring",
            "cart.expired",
        ]
        first, second, expiring, expired = events
        assert first["rev"] == 1
        assert second["rev"] == 2
        assert [line["sku"] for line in second["data"]["lines"]] == ["IDLE-1", "IDLE-2"]
        assert 0 < expiring["data"]["expires_in_seconds"] <= 5
        assert expired["data"]["cart_id"] == second["data"]["cart_id"]
        assert len({e["id"] for e in events}) == 4
        # The buyer's cart was checked out: no deadline of it fires. The guest: nothing at all.
        assert of(buyer) == ["cart.checked_out"]
        assert of(leaver) == ["customer.erased"]
        assert not any(owner.startswith("g:") for owner in receiver.by_owner())
        assert receiver.rejected == []
    finally:
        worker.stop()
        service.stop()


async def test_erasure_is_the_last_event_even_with_deliveries_pending(
    private_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    answers = iter([503, 503, 503])

    def busy(attempt: int, event: dict[str, object]) -> object:
        return next(answers, 204)

    receiver = Receiver(free_port(), behaviour=busy)
    hooks = webhooks_file(tmp_path, {"name": "crm", "url": receiver.url, "secret": SECRET})
    env = events_env(hooks, CARTSYNC_ABANDONED_AFTER_SECONDS="1")
    service = start_service(private_redis, tmp_path, env)
    worker = start_worker(private_redis, tmp_path, env)
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    h = tokens.headers("customer", customer)
    try:
        async with (
            receiving(receiver),
            httpx.AsyncClient(base_url=service.url, timeout=10) as http,
        ):
            for sku in ("A", "B"):
                assert (await http.post("/v1/cart/lines", headers=h, json={"sku": sku})).is_success
            r = await http.post("/v1/wishlists/default/items", headers=h, json={"sku": "W"})
            assert r.status_code == 201
            r = await http.put("/v1/cart/collection", headers=h, json={"ready": True})
            assert r.status_code == 200
            assert (await http.delete("/v1/me", headers=h)).status_code == 200
            await eventually(
                lambda: (
                    "customer.erased" in [e["type"] for e in receiver.of_type("customer.erased")]
                ),
                "erased delivered",
                30,
            )
            await asyncio.sleep(2.5)  # past the abandonment threshold: nothing may follow
        types = [e["type"] for e in receiver.by_owner()[f"c:{customer}"]]
        assert types == ["wishlist.item_added", "cart.collection_ready", "customer.erased"]
    finally:
        worker.stop()
        service.stop()
