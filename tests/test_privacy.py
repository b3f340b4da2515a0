"""Export and erasure of one owner's data, and how long Redis keeps it."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

DAY_MS = 86_400_000
SLACK_MS = 5 * 60 * 1000
"""How far below the configured lifetime a key's PTTL may be: the time the test itself took."""


def owner_keys(redis_server: RedisProcess, owner: str) -> set[str]:
    """Every key holding the owner's id in its hash tag (SCAN, never KEYS)."""
    client = redis_server.client()
    try:
        return {k.decode() for k in client.scan_iter(match=f"*{{{owner}}}*", count=1000)}
    finally:
        client.close()


def pttls(redis_server: RedisProcess, keys: set[str]) -> dict[str, int]:
    client = redis_server.client()
    try:
        return {k: int(client.pttl(k)) for k in keys}
    finally:
        client.close()


def assert_lifetime(ttls: dict[str, int], lifetime_ms: int) -> None:
    assert ttls, "the owner has no keys"
    for key, ttl in ttls.items():
        assert lifetime_ms - SLACK_MS < ttl <= lifetime_ms, (key, ttl, lifetime_ms)


async def fill(http: httpx.AsyncClient, headers: dict[str, str], prefix: str) -> None:
    """A cart with two lines and a note, and items on the default and a named wishlist."""
    for sku, qty in ((f"{prefix}-1", 2), (f"{prefix}-2", 1)):
        r = await http.post("/v1/cart/lines", json={"sku": sku, "qty": qty}, headers=headers)
        assert r.status_code == 201, r.text
    r = await http.put("/v1/cart/note", json={"note": f"{prefix} note"}, headers=headers)
    assert r.status_code == 200, r.text
    r = await http.post(
        "/v1/wishlists/default/items", json={"sku": f"{prefix}-W1"}, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await http.post("/v1/wishlists", json={"name": f"{prefix} list"}, headers=headers)
    assert r.status_code == 201, r.text
    named = r.json()["wishlist"]["id"]
    r = await http.post(
        f"/v1/wishlists/{named}/items", json={"sku": f"{prefix}-W2"}, headers=headers
    )
    assert r.status_code == 201, r.text


async def test_export_holds_the_callers_data_only(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    alice = tokens.headers("customer", customer_id)
    bob_id = f"cust-{uuid.uuid4().hex[:12]}"
    bob = tokens.headers("customer", bob_id)
    await fill(client, alice, "ALICE")
    await fill(client, bob, "BOB")

    r = await client.get("/v1/me/export", headers=alice)
    assert r.status_code == 200, r.text
    export = r.json()
    assert set(export) == {"owner", "exported_at", "cart", "wishlists", "events", "support_reads"}
    assert export["support_reads"] == []  # nobody from customer service looked
    assert export["owner"] == f"c:{customer_id}"
    assert export["cart"]["owner"] == f"c:{customer_id}"
    assert {line["sku"]: line["qty"] for line in export["cart"]["lines"]} == {
        "ALICE-1": 2,
        "ALICE-2": 1,
    }
    assert export["cart"]["note"] == "ALICE note"
    assert {w["name"]: [i["sku"] for i in w["items"]] for w in export["wishlists"]} == {
        "default": ["ALICE-W1"],
        "ALICE list": ["ALICE-W2"],
    }
    assert [e["rev"] for e in export["events"]] == list(range(1, 7))
    assert [e["type"] for e in export["events"]] == [
        "line.added",
        "line.added",
        "cart.note_set",
        "wishlist.item_added",
        "wishlist.created",
        "wishlist.item_added",
    ]
    assert {e["actor"]["id"] for e in export["events"]} == {customer_id}
    assert "BOB" not in r.text
    assert bob_id not in r.text

    # A back-end service exports a named customer through the mirrored route.
    service = tokens.headers("service", "crm")
    r = await client.get(f"/v1/customers/{bob_id}/me/export", headers=service)
    assert r.status_code == 200, r.text
    assert r.json()["owner"] == f"c:{bob_id}"
    assert "ALICE" not in r.text


async def test_erasure_removes_every_key_and_leaves_others_alone(
    client: httpx.AsyncClient, tokens: Tokens, redis_server: RedisProcess, customer_id: str
) -> None:
    alice = tokens.headers("customer", customer_id)
    bob_id = f"cust-{uuid.uuid4().hex[:12]}"
    bob = tokens.headers("customer", bob_id)
    await fill(client, alice, "ALICE")
    await fill(client, bob, "BOB")
    r = await client.post(
        "/v1/cart/lines", json={"sku": "KEYED"}, headers={**alice, "Idempotency-Key": "k-erase"}
    )
    assert r.status_code == 201, r.text
    assert owner_keys(redis_server, f"c:{customer_id}")
    bob_keys = owner_keys(redis_server, f"c:{bob_id}")

    r = await client.delete("/v1/me", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json() == {"erased": True}

    assert owner_keys(redis_server, f"c:{customer_id}") == set()
    r = await client.get("/v1/me/export", headers=alice)
    assert r.status_code == 200, r.text
    export = r.json()
    assert export["cart"]["lines"] == []
    assert export["cart"]["rev"] == 0
    assert export["cart"]["note"] == ""
    assert export["events"] == []
    assert all(w["items"] == [] for w in export["wishlists"])
    assert [w["id"] for w in export["wishlists"]] == ["default"]
    r = await client.get("/v1/cart/history", headers=alice)
    assert r.json()["events"] == []

    # The idempotency record went too: the same key is a new request now.
    r = await client.post(
        "/v1/cart/lines", json={"sku": "KEYED"}, headers={**alice, "Idempotency-Key": "k-erase"}
    )
    assert r.status_code == 201, r.text
    assert "Idempotent-Replayed" not in r.headers
    assert r.json()["rev"] == 1

    assert owner_keys(redis_server, f"c:{bob_id}") == bob_keys
    r = await client.get("/v1/cart", headers=bob)
    assert {line["sku"] for line in r.json()["lines"]} == {"BOB-1", "BOB-2"}


async def test_a_guest_can_erase_its_data(
    client: httpx.AsyncClient, tokens: Tokens, redis_server: RedisProcess
) -> None:
    r = await client.post("/v1/guest")
    assert r.status_code == 201, r.text
    guest_id = r.json()["guest_id"]
    guest = {"Authorization": f"Bearer {r.json()['token']}"}
    await fill(client, guest, "GUEST")
    assert owner_keys(redis_server, f"g:{guest_id}")

    r = await client.delete("/v1/me", headers=guest)
    assert r.status_code == 200, r.text
    assert owner_keys(redis_server, f"g:{guest_id}") == set()
    r = await client.get("/v1/me/export", headers=guest)
    assert r.json()["events"] == []
    assert r.json()["cart"]["lines"] == []


async def test_customer_keys_live_90_days_from_the_last_change(
    client: httpx.AsyncClient, tokens: Tokens, redis_server: RedisProcess, customer_id: str
) -> None:
    alice = tokens.headers("customer", customer_id)
    await fill(client, alice, "ALICE")
    keys = owner_keys(redis_server, f"c:{customer_id}")
    assert {k.rsplit(":", 1)[1] for k in keys} >= {"meta", "lines", "wl", "wli", "log", "idem"}
    assert_lifetime(pttls(redis_server, keys), 90 * DAY_MS)


async def test_guest_keys_live_30_days(
    client: httpx.AsyncClient, tokens: Tokens, redis_server: RedisProcess
) -> None:
    guest_id = f"g_{uuid.uuid4().hex}"
    guest = tokens.headers("guest", guest_id)
    await fill(client, guest, "GUEST")
    assert_lifetime(pttls(redis_server, owner_keys(redis_server, f"g:{guest_id}")), 30 * DAY_MS)


# 60 s left: as if the data had been idle for almost 90 days; 200 days left: as if the
# lifetime had been configured longer before (a shortened one applies at the next change).
@pytest.mark.parametrize("left_ms", [60_000, 200 * DAY_MS])
async def test_a_no_op_change_still_renews_every_key(
    client: httpx.AsyncClient,
    tokens: Tokens,
    redis_server: RedisProcess,
    customer_id: str,
    left_ms: int,
) -> None:
    alice = tokens.headers("customer", customer_id)
    await fill(client, alice, "ALICE")
    keys = owner_keys(redis_server, f"c:{customer_id}")
    admin = redis_server.client()
    try:
        for key in keys:
            admin.pexpire(key, left_ms)
    finally:
        admin.close()
    # Adding an item that is already on the list changes nothing, but the owner was active.
    r = await client.post("/v1/wishlists/default/items", json={"sku": "ALICE-W1"}, headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is False
    assert_lifetime(pttls(redis_server, keys), 90 * DAY_MS)


async def test_the_customer_lifetime_is_configurable(
    redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    env = service_env(redis_server.url, tmp_path, CARTSYNC_CUSTOMER_TTL_DAYS="1")
    short = ServiceProcess(env).start()
    try:
        customer_id = f"cust-{uuid.uuid4().hex[:12]}"
        async with httpx.AsyncClient(base_url=short.url, timeout=10) as http:
            await fill(http, tokens.headers("customer", customer_id), "SHORT")
        keys = owner_keys(redis_server, f"c:{customer_id}")
        assert_lifetime(pttls(redis_server, keys), 1 * DAY_MS)
    finally:
        short.stop()


@pytest.mark.parametrize("key", ["order-42", "f0e1d2c3-b4a5-4697-8899-aabbccddeeff"])
async def test_idempotency_records_are_kept_for_24_hours(
    client: httpx.AsyncClient,
    tokens: Tokens,
    redis_server: RedisProcess,
    customer_id: str,
    key: str,
) -> None:
    alice = tokens.headers("customer", customer_id)
    before_ms = int(time.time() * 1000)
    r = await client.post(
        "/v1/cart/lines", json={"sku": "A-1"}, headers={**alice, "Idempotency-Key": key}
    )
    assert r.status_code == 201, r.text
    after_ms = int(time.time() * 1000)

    owner = f"c:{customer_id}"
    record = f"k:customer:{customer_id}:{key}"  # scoped to the owner and to the caller
    admin = redis_server.client()
    try:
        assert admin.hexists(f"cs:{{{owner}}}:idem", record)
        score = admin.zscore(f"cs:{{{owner}}}:idemx", record)
    finally:
        admin.close()
    assert score is not None
    assert before_ms + DAY_MS - 1000 <= score <= after_ms + DAY_MS + 1000

    # The record is what a retry gets back.
    again = await client.post(
        "/v1/cart/lines", json={"sku": "A-1"}, headers={**alice, "Idempotency-Key": key}
    )
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == r.content


async def test_records_swept_away_leave_no_key_without_a_lifetime(
    redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    """Expired idempotency records go in batches (entry.lua); when a batch empties the record
    keys, the record written next creates them again, with the lifetime of the owner's others."""
    env = service_env(redis_server.url, tmp_path, CARTSYNC_IDEMPOTENCY_TTL_SECONDS="1")
    short = ServiceProcess(env).start()
    try:
        customer_id = f"cust-{uuid.uuid4().hex[:12]}"
        alice = tokens.headers("customer", customer_id)
        async with httpx.AsyncClient(base_url=short.url, timeout=10) as http:
            for n in range(1, 8):
                r = await http.post(
                    "/v1/cart/lines",
                    json={"sku": f"A-{n}"},
                    headers={**alice, "Idempotency-Key": f"k{n}"},
                )
                assert r.status_code == 201, r.text
            await asyncio.sleep(1.2)  # every record expired; the 8th revision sweeps them
            r = await http.post(
                "/v1/cart/lines", json={"sku": "A-8"}, headers={**alice, "Idempotency-Key": "k8"}
            )
            assert r.status_code == 201, r.text
            assert r.json()["rev"] == 8
        owner = f"c:{customer_id}"
        admin = redis_server.client()
        try:
            assert admin.hkeys(f"cs:{{{owner}}}:idem") == [f"k:customer:{customer_id}:k8".encode()]
        finally:
            admin.close()
        assert_lifetime(pttls(redis_server, owner_keys(redis_server, owner)), 90 * DAY_MS)
    finally:
        short.stop()
