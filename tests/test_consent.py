"""Staff see a customer's cart only with consent, which expires and can be revoked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

STORE = "store-7"


async def handoff(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post("/v1/handoffs", headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["code"]) == 8
    assert body["code"].isdigit()
    assert body["qr_svg"].startswith("<svg")
    return str(body["code"])


async def claim(client: httpx.AsyncClient, code: str, staff: dict[str, str]) -> dict[str, str]:
    r = await client.post(f"/v1/handoffs/{code}/claim", headers=staff)
    assert r.status_code == 201, r.text
    return dict(r.json()["grant"])


async def test_a_claimed_code_gives_that_staff_member_live_edit_access(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, service: ServiceProcess
) -> None:
    me = tokens.headers("customer", customer_id)
    staff = tokens.headers("staff", "emp-1", store=STORE)
    await client.post("/v1/cart/lines", json={"sku": "SHOE-1", "attrs": {"size": "41"}}, headers=me)
    code = await handoff(client, me)
    grant = await claim(client, code, staff)
    assert grant["owner"] == f"c:{customer_id}"
    assert grant["staff"] == "emp-1"
    assert grant["store"] == STORE

    # One time only.
    again = await client.post(f"/v1/handoffs/{code}/claim", headers=staff)
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "handoff_not_found"

    base = f"/v1/grants/{grant['id']}"
    cart = (await client.get(base + "/cart", headers=staff)).json()
    assert [line["sku"] for line in cart["lines"]] == ["SHOE-1"]
    r = await client.post(
        base + "/cart/lines", json={"sku": "SHOE-1", "attrs": {"size": "42"}}, headers=staff
    )
    assert r.status_code == 201
    assert r.json()["line"]["updated_by"] == {"role": "staff", "id": "emp-1", "store": STORE}
    r = await client.put(base + "/cart/collection", json={"ready": True}, headers=staff)
    assert r.status_code == 200

    mine = (await client.get("/v1/cart", headers=me)).json()
    assert len(mine["lines"]) == 2
    assert mine["ready_for_collection"] is True
    history = (await client.get("/v1/cart/history?since=0", headers=me)).json()["events"]
    types = [e["type"] for e in history]
    assert types == ["line.added", "grant.started", "line.added", "cart.collection_set"]
    assert history[2]["actor"]["role"] == "staff"

    # Not for another employee, nor the same one at another store, nor a customer token.
    for other in (
        tokens.headers("staff", "emp-2", store=STORE),
        tokens.headers("staff", "emp-1", store="store-9"),
    ):
        r = await client.get(base + "/cart", headers=other)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "grant_not_found"
    assert (await client.get(base + "/cart", headers=me)).status_code == 403
    # Staff cannot pay, export or erase for the customer.
    for method, path in (("POST", "/cart/checkout"), ("GET", "/me/export"), ("DELETE", "/me")):
        assert (await client.request(method, base + path, headers=staff)).status_code in (404, 405)


async def test_revoking_cuts_the_tablet_off_at_once(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, service: ServiceProcess
) -> None:
    me = tokens.headers("customer", customer_id)
    staff_token = tokens.token("staff", "emp-3", store=STORE)
    staff = {"Authorization": f"Bearer {staff_token}"}
    await client.post("/v1/cart/lines", json={"sku": "HAT-1"}, headers=me)
    grant = await claim(client, await handoff(client, me), staff)
    listed = (await client.get("/v1/grants", headers=me)).json()["grants"]
    assert [g["id"] for g in listed] == [grant["id"]]

    url = service.url.replace("http", "ws") + "/v1/ws"
    protocols = ["cartsync.v1", f"bearer.{staff_token}", f"grant.{grant['id']}"]
    async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        hello = json.loads(await ws.recv())
        assert hello["owner"] == f"c:{customer_id}"
        await ws.send(json.dumps({"type": "sync"}))
        snapshot = json.loads(await ws.recv())
        assert [line["sku"] for line in snapshot["cart"]["lines"]] == ["HAT-1"]
        await client.post("/v1/cart/lines", json={"sku": "SCARF-1"}, headers=me)
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert event["event"]["data"]["line"]["sku"] == "SCARF-1"

        r = await client.delete(f"/v1/grants/{grant['id']}", headers=me)
        assert r.status_code == 200
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
        assert closed.value.rcvd.reason == "grant revoked"

    r = await client.get(f"/v1/grants/{grant['id']}/cart", headers=staff)
    assert r.status_code == 404
    assert (await client.get("/v1/grants", headers=me)).json()["grants"] == []
    # A new socket on the revoked grant is refused the same way.
    async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
    types = [
        e["type"]
        for e in (await client.get("/v1/cart/history?since=0", headers=me)).json()["events"]
    ]
    assert types[-1] == "grant.revoked"
    # Someone else's grant id cannot be revoked (nor probed).
    assert (await client.delete(f"/v1/grants/{grant['id']}", headers=me)).status_code == 404


async def test_bad_claims(client: httpx.AsyncClient, tokens: Tokens, customer_id: str) -> None:
    me = tokens.headers("customer", customer_id)
    staff = tokens.headers("staff", "emp-4", store=STORE)
    code = await handoff(client, me)
    assert (await client.post(f"/v1/handoffs/{code}/claim", headers=me)).status_code == 403
    assert (await client.post(f"/v1/handoffs/{code}/claim")).status_code == 401
    for bad in ("1234", "abcdefgh", "123456789"):
        r = await client.post(f"/v1/handoffs/{bad}/claim", headers=staff)
        assert r.status_code == 404
    r = await client.put("/v1/cart/collection", json={"ready": True}, headers=me)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "cart_empty"


@pytest.fixture(scope="module")
def strict(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = service_env(
        redis_server.url,
        tmp_path_factory.mktemp("consent"),
        CARTSYNC_GRANT_TTL_SECONDS="2",
        CARTSYNC_CLAIM_RATE_LIMIT="3/minute",
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc.url
    finally:
        proc.stop()


async def test_grants_expire_and_claims_are_rate_limited(
    strict: str, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    staff_token = tokens.token("staff", "emp-5", store="store-x")
    staff = {"Authorization": f"Bearer {staff_token}"}
    async with httpx.AsyncClient(base_url=strict) as client:
        await client.post("/v1/cart/lines", json={"sku": "A-1"}, headers=me)
        grant = await claim(client, await handoff(client, me), staff)
        url = strict.replace("http", "ws") + "/v1/ws"
        protocols = ["cartsync.v1", f"bearer.{staff_token}", f"grant.{grant['id']}"]
        async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
            await ws.recv()  # hello; nothing else comes until the grant runs out
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4403
            assert closed.value.rcvd.reason == "grant expired"
        assert (
            await client.get(f"/v1/grants/{grant['id']}/cart", headers=staff)
        ).status_code == 404

        # Guessing codes: the fourth attempt within the minute is refused.
        statuses = [
            (await client.post(f"/v1/handoffs/{n:08d}/claim", headers=staff)).status_code
            for n in range(3)
        ]
        assert 429 in statuses
        r = await client.post("/v1/handoffs/00000009/claim", headers=staff)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1


async def test_erasing_the_customer_ends_staff_access(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    staff = tokens.headers("staff", "emp-6", store=STORE)
    await client.post("/v1/cart/lines", json={"sku": "A-1"}, headers=me)
    grant = await claim(client, await handoff(client, me), staff)
    assert (await client.delete("/v1/me", headers=me)).status_code == 200
    r = await client.get(f"/v1/grants/{grant['id']}/cart", headers=staff)
    assert r.status_code == 404
