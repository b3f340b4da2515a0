"""Quantity buttons send a change ("+1"), resolved against the stored quantity: every tap counts."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Tokens


async def test_every_tap_counts_once_even_when_retried(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    added = await client.post("/v1/cart/lines", json={"sku": "SOCKS-5", "qty": 1}, headers=me)
    line = added.json()["line"]["id"]
    path = f"/v1/cart/lines/{line}"

    # Twenty taps at once, each from a screen that still shows 1: none is lost.
    taps = [
        client.patch(path, json={"qty_delta": 1}, headers={**me, "Idempotency-Key": f"tap-{i}"})
        for i in range(20)
    ]
    assert {r.status_code for r in await asyncio.gather(*taps)} == {200}
    # A retry of a tap (the same key, say after a lost answer) is answered, not applied again.
    again = await client.patch(
        path, json={"qty_delta": 1}, headers={**me, "Idempotency-Key": "tap-7"}
    )
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    cart = (await client.get("/v1/cart", headers=me)).json()
    assert [(ln["sku"], ln["qty"]) for ln in cart["lines"]] == [("SOCKS-5", 21)]

    down = await client.patch(path, json={"qty_delta": -1}, headers=me)
    assert down.json()["line"]["qty"] == 20
    history = (await client.get("/v1/cart/history?since=0", headers=me)).json()["events"]
    assert [e["type"] for e in history].count("line.updated") == 21


async def test_a_delta_to_zero_or_below_removes_and_bad_deltas_are_refused(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    added = await client.post("/v1/cart/lines", json={"sku": "HAT-1", "qty": 2}, headers=me)
    path = f"/v1/cart/lines/{added.json()['line']['id']}"
    for body, field in (
        ({"qty": 3, "qty_delta": 1}, "qty_delta"),
        ({"qty_delta": 1000}, "qty_delta"),
        ({"qty_delta": "1"}, "qty_delta"),
    ):
        refused = await client.patch(path, json=body, headers=me)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]["field"].endswith(field), refused.text
    too_many = await client.patch(path, json={"qty_delta": 998}, headers=me)
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "limit_exceeded"
    gone = await client.patch(path, json={"qty_delta": -5}, headers=me)
    assert gone.status_code == 200
    assert "removed" in gone.json()
    assert (await client.get("/v1/cart", headers=me)).json()["lines"] == []
    missing = await client.patch(path, json={"qty_delta": 1}, headers=me)
    assert missing.status_code == 404
