"""What the pages need of the consent API: a QR the tablet can open, and an end the tablet owns."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
import segno
import websockets

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

STORE = "store-7"


def qr_of(text: str) -> str:
    buffer = io.BytesIO()
    segno.make_qr(text, error="m").save(buffer, kind="svg", scale=6, border=2, xmldecl=False)
    return buffer.getvalue().decode()


async def read_until_closed(ws: websockets.ClientConnection) -> None:
    """Frames the socket may still get (an event, presence) before its close; at most ten."""
    for _ in range(10):
        await asyncio.wait_for(ws.recv(), 5)


async def test_the_qr_holds_a_link_to_the_tablet_page_with_the_code(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, service: ServiceProcess
) -> None:
    r = await client.post("/v1/handoffs", headers=tokens.headers("customer", customer_id))
    assert r.status_code == 201, r.text
    body = r.json()
    # The same symbols as a QR of the link: a camera app opens the tablet page, code in fragment.
    assert body["qr_svg"] == qr_of(f"{service.url}/staff#code={body['code']}")
    assert body["qr_svg"] != qr_of(body["code"])


async def test_the_staff_member_ends_the_grant_and_history_says_who(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, service: ServiceProcess
) -> None:
    me = tokens.headers("customer", customer_id)
    staff_token = tokens.token("staff", "emma", store=STORE)
    staff = {"Authorization": f"Bearer {staff_token}"}
    code = (await client.post("/v1/handoffs", headers=me)).json()["code"]
    claimed = await client.post(f"/v1/handoffs/{code}/claim", headers=staff)
    grant = claimed.json()["grant"]["id"]

    url = service.url.replace("http", "ws") + "/v1/ws"
    protocols = ["cartsync.v1", f"bearer.{staff_token}", f"grant.{grant}"]
    async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        json.loads(await ws.recv())  # hello
        await ws.send(json.dumps({"type": "sync"}))
        assert json.loads(await ws.recv())["type"] == "snapshot"
        # Not a customer's way, nor another employee's, nor the same one at another store.
        for other, status in (
            (me, 403),
            (tokens.headers("staff", "olav", store=STORE), 404),
            (tokens.headers("staff", "emma", store="store-9"), 404),
        ):
            refused = await client.post(f"/v1/grants/{grant}/end", headers=other)
            assert refused.status_code == status, refused.text
            assert "message" in refused.json()["error"]
        ended = await client.post(f"/v1/grants/{grant}/end", headers=staff)
        assert ended.status_code == 200, ended.text
        assert ended.json()["removed"] == grant
        # The tablet's own socket ends too, as when the customer revokes.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await read_until_closed(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403

    assert (await client.get(f"/v1/grants/{grant}/cart", headers=staff)).status_code == 404
    assert (await client.get("/v1/grants", headers=me)).json()["grants"] == []
    again = await client.post(f"/v1/grants/{grant}/end", headers=staff)
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "grant_not_found"
    history = (await client.get("/v1/cart/history?since=0", headers=me)).json()["events"]
    assert [e["type"] for e in history] == ["grant.started", "grant.revoked"]
    assert history[-1]["actor"] == {"role": "staff", "id": "emma", "store": STORE}
    assert history[-1]["data"] == {"grant_id": grant}
