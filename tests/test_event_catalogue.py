"""The event catalogue (``cartsync.wire_events``) is what the Lua scripts really emit.

One customer goes through every change the service knows, over REST and websocket ops, with a
staff hand-off and a guest merge, and is then erased. Every event is read back the three ways a
client or operator meets one (``GET /v1/cart/history``, the websocket's ``event`` frames, and
the owner's Redis channel, the only place ``owner.erased`` appears) and decoded strictly with
the catalogue's types.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from cartsync.domain import events
from cartsync.storage import presence
from cartsync.storage.keys import OwnerKeys
from cartsync.wire_events import EVENT_DATA, EventEnvelope, EventFrame
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess

IO_TIMEOUT_S = 10.0
MAX_FRAMES = 500
"""No loop reads more frames or messages than this."""
STORE = "store-12"

_envelope = msgspec.json.Decoder(EventEnvelope)
_frame = msgspec.json.Decoder(EventFrame)
_data = {name: msgspec.json.Decoder(t) for name, t in EVENT_DATA.items()}


class _History(msgspec.Struct):
    rev: int
    complete: bool
    events: list[msgspec.Raw]


def decode_strictly(raw: bytes) -> EventEnvelope:
    """The event as the catalogue types it; fails on any field the catalogue does not know.

    ``forbid_unknown_fields`` guards the envelope and each data type; the nested values (line,
    item, wishlist, actor, grant) are the domain's types, which tolerate unknown fields when
    read back from Redis, so a round trip through the types must give the same JSON back too.
    """
    event = _envelope.decode(raw)
    assert event.type in _data, f"event type {event.type!r} is not in the catalogue"
    data = _data[event.type].decode(event.data)
    assert msgspec.to_builtins(data) == json.loads(bytes(event.data)), event.type
    assert msgspec.to_builtins(event.actor) == json.loads(raw)["actor"], event.type
    return event


def test_the_catalogue_names_exactly_the_domain_events() -> None:
    assert set(EVENT_DATA) == set(events.ALL)


@contextlib.asynccontextmanager
async def live_socket(service: ServiceProcess, token: str) -> AsyncIterator[ClientConnection]:
    url = "ws" + service.url.removeprefix("http") + "/v1/ws"
    protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
    async with connect(url, subprotocols=protocols, proxy=None, open_timeout=IO_TIMEOUT_S) as ws:
        yield ws


class Frames:
    """Reads a socket: event frames are kept (raw), acks settle ops, pings are answered."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[bytes] = []
        self.acks: dict[str, dict[str, Any]] = {}

    async def next(self) -> dict[str, Any]:
        for _ in range(MAX_FRAMES):
            raw = await asyncio.wait_for(self.ws.recv(), IO_TIMEOUT_S)
            assert isinstance(raw, str)
            frame: dict[str, Any] = json.loads(raw)
            if frame["type"] == "ping":
                await self.ws.send('{"type": "pong"}')
                continue
            if frame["type"] == "event":
                _frame.decode(raw)
                self.events.append(json.dumps(frame["event"]).encode())
            elif frame["type"] == "ack":
                self.acks[frame["id"]] = frame
            return frame
        raise AssertionError("only pings")

    async def op(self, op_id: str, name: str, body: object, **params: str) -> dict[str, Any]:
        frame = {"type": "op", "id": op_id, "name": name, "params": params, "body": body}
        await self.ws.send(json.dumps(frame))
        for _ in range(MAX_FRAMES):
            if op_id in self.acks:
                return self.acks[op_id]
            got = await self.next()
            assert got["type"] != "nack", got
        raise AssertionError(f"no ack for {op_id}")

    async def until_rev(self, rev: int) -> None:
        for _ in range(MAX_FRAMES):
            if self.events and json.loads(self.events[-1])["rev"] >= rev:
                return
            await self.next()
        raise AssertionError(f"no event up to revision {rev}")


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def every_change(client: httpx.AsyncClient, tokens: Tokens, live: Frames, me: str) -> None:
    """Each change the service offers, once, by the route or op that makes it."""
    auth = tokens.headers("customer", me)
    post, patch, delete = client.post, client.patch, client.delete
    tee = {"sku": "TEE-1", "attrs": {"size": "M"}, "title": "Tee", "unit_price": "9.90"}
    line = (await ok(await post("/v1/cart/lines", json=tee, headers=auth)))["line"]["id"]
    await ok(await post("/v1/cart/lines", json=tee, headers=auth))
    await ok(await patch(f"/v1/cart/lines/{line}", json={"qty": 5}, headers=auth))
    socks = await ok(await post("/v1/cart/lines", json={"sku": "SOCK-1"}, headers=auth))
    await ok(await patch(f"/v1/cart/lines/{socks['line']['id']}", json={"qty": 0}, headers=auth))
    cap = await ok(await post("/v1/cart/lines", json={"sku": "CAP-1"}, headers=auth))
    await ok(await delete(f"/v1/cart/lines/{cap['line']['id']}", headers=auth))
    mug = await ok(await post("/v1/cart/lines", json={"sku": "MUG-1"}, headers=auth))
    await ok(await post(f"/v1/cart/lines/{mug['line']['id']}/save-for-later", headers=auth))
    await live.op("catalogue-note", "set_note", {"note": "gift wrap"})
    await ok(await client.put("/v1/cart/collection", json={"ready": True}, headers=auth))

    created = await live.op("catalogue-wishlist", "create_wishlist", {"name": "Birthday"})
    wishlist = created["result"]["wishlist"]["id"]
    items = f"/v1/wishlists/{wishlist}/items"
    await ok(await patch(f"/v1/wishlists/{wishlist}", json={"name": "Birthday 2"}, headers=auth))
    book = {"sku": "BOOK-1", "title": "Book", "note": "signed"}
    kept = (await ok(await post(items, json=book, headers=auth)))["item"]["id"]
    dropped = (await ok(await post(items, json={"sku": "BOOK-2"}, headers=auth)))["item"]["id"]
    await ok(await delete(f"{items}/{dropped}", headers=auth))
    await ok(await post(f"{items}/{kept}/move-to-cart", json={"qty": 2}, headers=auth))
    await ok(await delete(f"/v1/wishlists/{wishlist}", headers=auth))

    staff = tokens.headers("staff", "emp-12", store=STORE)
    code = (await ok(await post("/v1/handoffs", headers=auth)))["code"]
    grant = (await ok(await post(f"/v1/handoffs/{code}/claim", headers=staff)))["grant"]
    await ok(
        await post(f"/v1/grants/{grant['id']}/cart/lines", json={"sku": "HAT-1"}, headers=staff)
    )
    await ok(await delete(f"/v1/grants/{grant['id']}", headers=auth))

    await ok(await post("/v1/cart/checkout", headers=auth))
    guest = (await ok(await post("/v1/guest")))["token"]
    guest_auth = {"Authorization": f"Bearer {guest}"}
    await ok(await post("/v1/cart/lines", json={"sku": "TEE-1"}, headers=guest_auth))
    await ok(await post("/v1/wishlists/default/items", json={"sku": "PEN-1"}, headers=guest_auth))
    merge = {"guest_token": guest, "strategy": "max"}
    await ok(await post("/v1/cart/merge", json=merge, headers=auth))
    await ok(await delete("/v1/cart", headers=auth))
    support = {**tokens.headers("support", "agent-1"), "X-Support-Reason": "catalogue test"}
    restore = {"rev": 3, "reason": "the customer asked", "wishlists": True}
    await ok(await post(f"/v1/customers/{me}/cart/restore", json=restore, headers=support))


async def test_every_event_type_decodes_with_the_catalogue(
    client: httpx.AsyncClient,
    tokens: Tokens,
    customer_id: str,
    service: ServiceProcess,
    redis_server: RedisProcess,
) -> None:
    owner = f"c:{customer_id}"
    auth = tokens.headers("customer", customer_id)
    redis = aioredis.from_url(redis_server.url)
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(OwnerKeys(owner).channel)
        async with live_socket(service, tokens.token("customer", customer_id)) as ws:
            live = Frames(ws)
            assert (await live.next())["type"] == "hello"
            await ws.send('{"type": "sync"}')
            assert (await live.next())["type"] == "snapshot"
            await every_change(client, tokens, live, customer_id)
            r = await client.get("/v1/cart/history", params={"since": 0}, headers=auth)
            history = msgspec.json.decode(r.content, type=_History)
            await live.until_rev(history.rev)
        assert history.complete
        logged = [decode_strictly(bytes(raw)) for raw in history.events]
        assert [e.rev for e in logged] == list(range(1, history.rev + 1))
        assert {e.epoch for e in logged} == {logged[0].epoch}
        # The socket delivers the logged events themselves, byte for byte as JSON values.
        assert [json.loads(e) for e in live.events] == [
            json.loads(bytes(e)) for e in history.events
        ]

        await ok(await client.delete("/v1/me", headers=auth))
        published: list[EventEnvelope] = []
        async with asyncio.timeout(IO_TIMEOUT_S):
            for _ in range(MAX_FRAMES):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message["data"] == presence.NOTICE:
                    continue  # a device of the owner came or went: not an event
                published.append(decode_strictly(message["data"]))
                if published[-1].type == events.OWNER_ERASED:
                    break
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()

    erased = published[-1]
    assert erased.type == events.OWNER_ERASED
    assert (erased.rev, erased.epoch) == (0, "")
    assert [e.type for e in published[:-1]] == [e.type for e in logged]
    seen = {e.type for e in logged} | {erased.type}
    assert seen == set(events.ALL), f"never seen: {sorted(set(events.ALL) - seen)}"
    by_actor = {(e.type, e.actor.role) for e in logged}
    assert (events.GRANT_STARTED, "staff") in by_actor
    assert (events.LINE_ADDED, "staff") in by_actor
