"""Many devices of one customer writing at once: every change lands, in one revision order."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

DEVICES = [f"d{n}" for n in range(1, 6)]


@contextlib.asynccontextmanager
async def devices(
    service: ServiceProcess, token: str, names: list[str]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client (own connection pool) per device, all signed in as the same customer."""
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name in names:
            headers = {"Authorization": f"Bearer {token}", "X-Device-Id": name}
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30)
            )
        yield clients


async def history(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/v1/cart/history", params={"since": 0})
    assert r.status_code == 200, r.text
    return r.json()


async def test_fifty_adds_from_five_devices_all_land(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with devices(service, token, DEVICES) as clients:
        sends = [
            clients[name].post("/v1/cart/lines", json={"sku": "SKU-HOT", "qty": 1})
            for name in DEVICES
            for _ in range(10)
        ]
        responses = await asyncio.gather(*sends)

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 200: 49}, [r.text for r in responses if r.status_code >= 300]
        assert sorted(r.json()["rev"] for r in responses) == list(range(1, 51))
        assert sorted(r.json()["line"]["qty"] for r in responses) == list(range(1, 51))

        d1 = clients["d1"]
        cart = (await d1.get("/v1/cart")).json()
        assert cart["rev"] == 50
        assert [(x["sku"], x["qty"]) for x in cart["lines"]] == [("SKU-HOT", 50)]

        log = await history(d1)
        assert log["rev"] == 50
        assert log["complete"] is True
        events = log["events"]
        assert [e["rev"] for e in events] == list(range(1, 51))
        assert [e["type"] for e in events] == ["line.added"] + ["line.updated"] * 49
        assert [e["data"]["line"]["qty"] for e in events] == list(range(1, 51))
        assert Counter(e["actor"]["device"] for e in events) == dict.fromkeys(DEVICES, 10)
        assert {e["actor"]["id"] for e in events} == {customer_id}


async def test_two_devices_editing_different_lines_lose_nothing(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with devices(service, token, ["phone", "laptop"]) as clients:
        owned = {}
        for name, c in clients.items():
            r = await c.post("/v1/cart/lines", json={"sku": f"OWN-{name}"})
            assert r.status_code == 201, r.text
            owned[name] = r.json()["line"]["id"]
        start_rev = 2

        async def patch_own_line(name: str) -> None:
            # Sequential per device, so the last value a device sets is known.
            for qty in range(2, 22):
                r = await clients[name].patch(f"/v1/cart/lines/{owned[name]}", json={"qty": qty})
                assert r.status_code == 200, r.text

        async def add_new_lines(name: str) -> list[httpx.Response]:
            return await asyncio.gather(
                *(
                    clients[name].post("/v1/cart/lines", json={"sku": f"{name}-{n}", "qty": n})
                    for n in range(1, 16)
                )
            )

        results = await asyncio.gather(
            patch_own_line("phone"),
            patch_own_line("laptop"),
            add_new_lines("phone"),
            add_new_lines("laptop"),
        )
        for added in results[2:]:
            assert [r.status_code for r in added] == [201] * 15

        cart = (await clients["phone"].get("/v1/cart")).json()
        total_writes = 2 * 20 + 2 * 15
        assert cart["rev"] == start_rev + total_writes
        qty_by_sku = {x["sku"]: x["qty"] for x in cart["lines"]}
        expected = {"OWN-phone": 21, "OWN-laptop": 21}
        expected |= {f"{name}-{n}": n for name in ("phone", "laptop") for n in range(1, 16)}
        assert qty_by_sku == expected
        assert len({x["id"] for x in cart["lines"]}) == len(expected)

        events = (await history(clients["laptop"]))["events"]
        assert [e["rev"] for e in events] == list(range(1, cart["rev"] + 1))
        assert Counter(e["actor"]["device"] for e in events) == {"phone": 36, "laptop": 36}
        for name in ("phone", "laptop"):
            patched = [
                e["data"]["line"]["qty"]
                for e in events
                if e["type"] == "line.updated" and e["data"]["line"]["id"] == owned[name]
            ]
            assert patched == list(range(2, 22))
