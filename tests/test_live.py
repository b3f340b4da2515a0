"""``GET /v1/ws``: live events across instances, resume by revision, ops, auth and close codes.

Every test talks to real Hypercorn processes over real sockets with the ``websockets`` client,
and checks what a client author would: the frames that arrive, their order, and close codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

pytestmark = pytest.mark.slow

IO_TIMEOUT_S = 10.0
"""Longest wait for one expected frame or close."""
QUIET_S = 0.5
"""How long a socket must stay silent to show that no extra frame is on its way."""
MAX_FRAMES = 2000
"""No loop reads more frames than this."""
SHOP = "https://shop.example"

Frame = dict[str, Any]


# Connecting -------------------------------------------------------------------------------


def ws_url(service: ServiceProcess) -> str:
    return "ws" + service.url.removeprefix("http") + "/v1/ws"


def bearer(token: str) -> list[Subprotocol]:
    """The subprotocols that carry a token (browsers cannot set headers on websockets)."""
    return [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]


def dial(service: ServiceProcess, **kw: Any) -> connect:
    """A websockets connection to /v1/ws that ignores proxy variables and does not hang."""
    kw.setdefault("open_timeout", IO_TIMEOUT_S)
    kw.setdefault("close_timeout", 2)
    return connect(ws_url(service), proxy=None, **kw)


class Live:
    """One client socket after ``hello``: small helpers over the protocol's frames."""

    def __init__(self, ws: ClientConnection, hello: Frame) -> None:
        self.ws = ws
        self.hello = hello

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def sync(self, since: int | None = None) -> None:
        await self.send({"type": "sync"} if since is None else {"type": "sync", "since": since})

    async def op(self, op_id: str, name: str, body: object = None, **extra: Any) -> None:
        frame: Frame = {"type": "op", "id": op_id, "name": name, **extra}
        if body is not None:
            frame["body"] = body
        await self.send(frame)

    async def frame(self, wait_s: float = IO_TIMEOUT_S) -> Frame:
        """The next frame other than a server ping (which is answered)."""
        return await next_frame(self.ws, wait_s=wait_s)

    async def events(self, count: int) -> list[Frame]:
        """The next ``count`` frames, each of which must be an event; their ``event`` objects."""
        found = []
        for _ in range(count):
            frame = await self.frame()
            assert frame["type"] == "event", frame
            found.append(frame["event"])
        return found

    async def quiet(self) -> None:
        """Nothing more arrives for a short while."""
        await assert_quiet(self.ws)

    async def close_code(self) -> int:
        return await close_code(self.ws)


async def next_frame(
    ws: ClientConnection, *, wait_s: float = IO_TIMEOUT_S, answer_pings: bool = True
) -> Frame:
    for _ in range(MAX_FRAMES):
        raw = await asyncio.wait_for(ws.recv(), wait_s)
        assert isinstance(raw, str), f"server sent a binary frame: {raw!r}"
        frame: Frame = json.loads(raw)
        if frame == {"type": "ping"}:
            if answer_pings:
                await ws.send('{"type":"pong"}')
            continue
        return frame
    raise AssertionError(f"only server pings for {MAX_FRAMES} frames")


async def assert_quiet(ws: ClientConnection, seconds: float = QUIET_S) -> None:
    try:
        extra = await next_frame(ws, wait_s=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected extra frame: {extra}")


async def close_code(ws: ClientConnection, wait_s: float = IO_TIMEOUT_S) -> int:
    """Read (and drop) frames until the server closes; the close code it sent."""
    try:
        async with asyncio.timeout(wait_s):
            for _ in range(MAX_FRAMES):
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006
    raise AssertionError("the server did not close the socket")


@contextlib.asynccontextmanager
async def live(service: ServiceProcess, token: str, **kw: Any) -> AsyncIterator[Live]:
    """A socket authenticated with the subprotocol token, past its ``hello``."""
    async with dial(service, subprotocols=bearer(token), **kw) as ws:
        assert ws.subprotocol == "cartsync.v1"
        hello = await next_frame(ws)
        assert hello["type"] == "hello", hello
        yield Live(ws, hello)


@contextlib.asynccontextmanager
async def rest(service: ServiceProcess, token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as http:
        yield http


async def add_lines(http: httpx.AsyncClient, skus: list[str]) -> list[int]:
    """Add one line per sku over REST; the revisions the service answered with."""
    revs = []
    for sku in skus:
        r = await http.post("/v1/cart/lines", json={"sku": sku})
        assert r.status_code == 201, r.text
        revs.append(r.json()["rev"])
    return revs


async def still_serving(service: ServiceProcess, tokens: Tokens) -> None:
    """The service answers HTTP and a fresh customer's socket gets its hello."""
    async with httpx.AsyncClient(base_url=service.url, timeout=IO_TIMEOUT_S) as http:
        assert (await http.get("/healthz")).status_code == 200
    other = f"cust-{uuid.uuid4().hex[:12]}"
    async with live(service, tokens.token("customer", other)) as sock:
        assert (sock.hello["rev"], sock.hello["owner"]) == (0, f"c:{other}")
        await sock.send({"type": "ping"})
        assert await sock.frame() == {"type": "pong"}


# Private services -------------------------------------------------------------------------


@contextlib.contextmanager
def running(redis_url: str, data_dir: Path, **overrides: str) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(redis_url, data_dir, **overrides)).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def instances(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two service instances on one Redis, as behind a load balancer."""
    with (
        running(redis_server.url, tmp_path_factory.mktemp("instance1")) as one,
        running(redis_server.url, tmp_path_factory.mktemp("instance2")) as two,
    ):
        yield one, two


@pytest.fixture(scope="module")
def strict(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Short auth timeout, one allowed Origin, two sockets per owner, no token leeway."""
    with running(
        redis_server.url,
        tmp_path_factory.mktemp("strict"),
        CARTSYNC_WS_AUTH_TIMEOUT_SECONDS="1",
        CARTSYNC_WS_ORIGINS=SHOP,
        CARTSYNC_WS_MAX_PER_OWNER="2",
        CARTSYNC_JWT_LEEWAY_SECONDS="0",
    ) as proc:
        yield proc


# Fan-out and resume -----------------------------------------------------------------------


async def test_a_socket_on_one_instance_sees_every_change_made_on_another(
    instances: tuple[ServiceProcess, ServiceProcess], tokens: Tokens, customer_id: str
) -> None:
    one, two = instances
    token = tokens.token("customer", customer_id)
    async with live(two, token) as b, rest(one, token) as a:
        assert (b.hello["rev"], b.hello["owner"]) == (0, f"c:{customer_id}")
        await b.sync(0)
        await b.quiet()  # nothing to catch up on yet
        for n in range(1, 31):
            r = await a.post("/v1/cart/lines", json={"sku": f"SKU-{n}", "qty": n})
            assert r.status_code == 201, r.text
            assert r.json()["rev"] == n
            [event] = await b.events(1)
            assert event["rev"] == n
            assert event["type"] == "line.added"
            assert (event["data"]["line"]["sku"], event["data"]["line"]["qty"]) == (f"SKU-{n}", n)
            assert event["actor"] == {"role": "customer", "id": customer_id}
        await b.quiet()

        history = (await a.get("/v1/cart/history", params={"since": 0})).json()
        assert [e["rev"] for e in history["events"]] == list(range(1, 31))


async def test_a_burst_of_changes_arrives_complete_and_in_order(
    instances: tuple[ServiceProcess, ServiceProcess], tokens: Tokens, customer_id: str
) -> None:
    one, two = instances
    token = tokens.token("customer", customer_id)
    async with live(two, token) as b, rest(one, token) as a:
        await b.sync(0)
        # Mixed change types, written without waiting for the socket.
        revs = await add_lines(a, [f"SKU-{n}" for n in range(1, 11)])
        for n in range(1, 11):
            r = await a.patch(f"/v1/cart/lines/L{n}", json={"qty": 5})
            assert r.status_code == 200, r.text
            revs.append(r.json()["rev"])
        for n in range(10):
            r = await a.put("/v1/cart/note", json={"note": f"note {n}"})
            assert r.status_code == 200, r.text
            revs.append(r.json()["rev"])
        assert revs == list(range(1, 31))

        events = await b.events(30)
        assert [e["rev"] for e in events] == list(range(1, 31))
        assert [e["type"] for e in events] == (
            ["line.added"] * 10 + ["line.updated"] * 10 + ["cart.note_set"] * 10
        )
        await b.quiet()


async def test_a_socket_that_reconnects_with_since_gets_exactly_what_it_missed(
    instances: tuple[ServiceProcess, ServiceProcess], tokens: Tokens, customer_id: str
) -> None:
    one, two = instances
    token = tokens.token("customer", customer_id)
    async with rest(one, token) as a:
        async with live(two, token) as b:
            await b.sync(0)
            await add_lines(a, [f"EARLY-{n}" for n in range(5)])
            last = (await b.events(5))[-1]["rev"]
            assert last == 5

        revs = await add_lines(a, [f"MISSED-{n}" for n in range(20)])
        assert revs == list(range(6, 26))

        async with live(two, token) as b:
            assert b.hello["rev"] == 25
            await b.sync(last)
            missed = await b.events(20)
            assert [e["rev"] for e in missed] == list(range(6, 26))
            assert [e["data"]["line"]["sku"] for e in missed] == [f"MISSED-{n}" for n in range(20)]
            await b.quiet()

            # ...and the session carries on live from there.
            await add_lines(a, ["LIVE-1"])
            [event] = await b.events(1)
            assert (event["rev"], event["data"]["line"]["sku"]) == (26, "LIVE-1")
            await b.quiet()

        # Resuming on the other instance works the same way.
        async with live(one, token) as b:
            await b.sync(20)
            assert [e["rev"] for e in await b.events(6)] == list(range(21, 27))
            await b.quiet()


async def test_resuming_at_the_current_revision_sends_nothing_until_the_next_change(
    instances: tuple[ServiceProcess, ServiceProcess], tokens: Tokens, customer_id: str
) -> None:
    one, two = instances
    token = tokens.token("customer", customer_id)
    async with rest(one, token) as a:
        await add_lines(a, ["A-1", "A-2", "A-3"])
        async with live(two, token) as b:
            assert b.hello["rev"] == 3
            await b.sync(3)
            await b.quiet()
            await add_lines(a, ["A-4"])
            assert [e["rev"] for e in await b.events(1)] == [4]
            await b.quiet()


async def test_when_the_log_no_longer_reaches_back_the_socket_gets_a_snapshot(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    with running(redis_server.url, tmp_path, CARTSYNC_EVENT_LOG_MAX="10") as short:
        async with rest(short, token) as a:
            await add_lines(a, [f"SKU-{n}" for n in range(1, 21)])
            for n in range(1, 11):
                r = await a.patch(f"/v1/cart/lines/L{n}", json={"qty": n + 1})
                assert r.status_code == 200, r.text
            cart = (await a.get("/v1/cart")).json()
            wishlists = (await a.get("/v1/wishlists")).json()
            assert cart["rev"] == 30

            async with live(short, token) as b:
                await b.sync(2)
                snap = await b.frame()
                assert snap["type"] == "snapshot", snap
                assert snap["rev"] == 30
                assert snap["cart"] == cart
                assert snap["cart"]["lines"] == cart["lines"]
                assert snap["wishlists"] == wishlists["wishlists"]
                await b.quiet()

                await add_lines(a, ["AFTER-1"])
                [event] = await b.events(1)
                assert (event["rev"], event["type"]) == (31, "line.added")
                await b.quiet()

            # The log keeps revisions 22..31: since=21 is still served from it, 20 is not.
            async with live(short, token) as b:
                await b.sync(21)
                assert [e["rev"] for e in await b.events(10)] == list(range(22, 32))
                await b.quiet()
            async with live(short, token) as b:
                await b.sync(20)
                snap = await b.frame()
                assert (snap["type"], snap["rev"]) == ("snapshot", 31)
                await b.quiet()


async def test_sync_without_since_sends_a_snapshot_then_live_events(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(service, token) as a:
        await add_lines(a, ["A-1", "A-2"])
        cart = (await a.get("/v1/cart")).json()
        async with live(service, token) as b:
            await b.sync()
            snap = await b.frame()
            assert snap["type"] == "snapshot", snap
            assert snap["rev"] == 2
            assert snap["cart"] == cart
            assert [w["id"] for w in snap["wishlists"]] == ["default"]
            await b.quiet()
            await add_lines(a, ["A-3"])
            assert [e["rev"] for e in await b.events(1)] == [3]
            await b.quiet()


async def test_a_since_ahead_of_the_server_gets_a_snapshot(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with live(service, token) as b:
        # The client remembers revisions this owner never had (e.g. Redis lost its data).
        await b.sync(999)
        snap = await b.frame()
        assert snap["type"] == "snapshot", snap
        assert snap["rev"] == 0
        assert snap["cart"]["lines"] == []
        await b.quiet()
        async with rest(service, token) as a:
            await add_lines(a, ["A-1"])
        assert [e["rev"] for e in await b.events(1)] == [1]
        await b.quiet()


async def test_erasing_the_owner_sends_open_sockets_a_fresh_snapshot(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(service, token) as a, live(service, token) as b:
        await b.sync(0)
        await add_lines(a, ["A-1", "A-2"])
        old_epoch = (await b.events(2))[-1]["epoch"]
        assert old_epoch
        assert (await a.get("/v1/cart")).json()["epoch"] == old_epoch

        r = await a.delete("/v1/me")
        assert r.status_code == 200, r.text
        snap = await b.frame()
        assert snap["type"] == "snapshot", snap
        assert (snap["rev"], snap["cart"]["lines"]) == (0, [])

        await add_lines(a, ["B-1"])
        [event] = await b.events(1)
        assert (event["rev"], event["data"]["line"]["sku"]) == (1, "B-1")
        assert event["epoch"] not in (None, old_epoch)
        await b.quiet()

    # A client that remembers revision 1 of the erased data (line A-1) is not told it is up to
    # date with the new revision 1 (line B-1).
    async with live(service, token) as b:
        assert (b.hello["rev"], b.hello["epoch"]) == (1, event["epoch"])
        await b.send({"type": "sync", "since": 1, "epoch": old_epoch})
        snap = await b.frame()
        assert snap["type"] == "snapshot", snap
        assert [x["sku"] for x in snap["cart"]["lines"]] == ["B-1"]
        await b.quiet()


async def test_nothing_is_sent_before_the_client_syncs(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with live(service, token) as b, rest(service, token) as a:
        await add_lines(a, ["A-1", "A-2"])
        await b.quiet()
        await b.sync(0)
        assert [e["rev"] for e in await b.events(2)] == [1, 2]
        await b.quiet()


async def test_client_ping_gets_a_pong(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(service, tokens.token("customer", customer_id)) as b:
        await b.send({"type": "ping"})
        assert await b.frame() == {"type": "pong"}
        await b.send({"type": "pong"})  # an unsolicited pong is harmless
        await b.quiet()


# Ops over the socket ----------------------------------------------------------------------


async def ack_and_event(sock: Live) -> tuple[Frame, Frame]:
    """An op's ack and the event it caused, in whichever order they arrive."""
    first, second = await sock.frame(), await sock.frame()
    by_type = {first["type"]: first, second["type"]: second}
    assert set(by_type) == {"ack", "event"}, (first, second)
    return by_type["ack"], by_type["event"]["event"]


async def test_an_op_is_acked_and_its_event_is_delivered(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(service, tokens.token("customer", customer_id)) as b:
        await b.sync(0)
        await b.op("op-1", "add_line", {"sku": "OP-1", "qty": 2, "attrs": {"size": "M"}})
        ack, event = await ack_and_event(b)
        assert ack["id"] == "op-1"
        assert (ack["status"], ack["rev"], ack["replayed"]) == (201, 1, False)
        line = ack["result"]["line"]
        assert (line["sku"], line["qty"], line["attrs"]) == ("OP-1", 2, {"size": "M"})
        assert ack["result"]["rev"] == 1
        assert (event["rev"], event["type"]) == (1, "line.added")
        assert event["data"]["line"] == line
        assert event["actor"]["id"] == customer_id

        # An op with params and a condition.
        await b.op("op-2", "patch_line", {"qty": 7}, params={"line_id": line["id"]}, if_match=1)
        ack, event = await ack_and_event(b)
        assert (ack["id"], ack["status"], ack["rev"]) == ("op-2", 200, 2)
        assert ack["result"]["line"]["qty"] == 7
        assert (event["rev"], event["type"]) == (2, "line.updated")
        await b.quiet()


async def test_resending_an_op_replays_its_ack_without_a_new_event(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with live(service, token) as b:
        await b.sync(0)
        await b.op("dup-1", "add_line", {"sku": "DUP", "qty": 3})
        first, _ = await ack_and_event(b)
        await b.op("dup-1", "add_line", {"sku": "DUP", "qty": 3})
        again = await b.frame()
        assert again["type"] == "ack", again
        assert again["replayed"] is True
        assert (again["id"], again["rev"], again["status"]) == ("dup-1", 1, 201)
        assert again["result"] == first["result"]
        await b.quiet()  # no second event

    # Replayed on another socket of the same customer too.
    async with live(service, token) as b:
        await b.op("dup-1", "add_line", {"sku": "DUP", "qty": 3})
        again = await b.frame()
        assert (again["type"], again["replayed"], again["result"]) == (
            "ack",
            True,
            first["result"],
        )
    async with rest(service, token) as a:
        cart = (await a.get("/v1/cart")).json()
        assert (cart["rev"], [(x["sku"], x["qty"]) for x in cart["lines"]]) == (1, [("DUP", 3)])


async def test_an_op_id_reused_with_another_body_is_nacked(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(service, tokens.token("customer", customer_id)) as b:
        await b.sync(0)
        await b.op("key-1", "add_line", {"sku": "K", "qty": 1})
        await ack_and_event(b)
        await b.op("key-1", "add_line", {"sku": "K", "qty": 2})
        nack = await b.frame()
        assert nack["type"] == "nack", nack
        assert nack["id"] == "key-1"
        assert nack["error"]["code"] == "idempotency_key_reused"
        await b.op("key-1", "set_note", {"note": "hi"})
        nack = await b.frame()
        assert (nack["type"], nack["error"]["code"]) == ("nack", "idempotency_key_reused")
        await b.quiet()


async def test_unknown_ops_and_bad_bodies_are_nacked_and_the_socket_stays_open(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(service, tokens.token("customer", customer_id)) as b:
        await b.sync(0)
        await b.op("u-1", "drop_tables", {})
        nack = await b.frame()
        assert (nack["type"], nack["id"]) == ("nack", "u-1"), nack
        assert nack["error"]["code"] == "unknown_op"
        assert nack["error"]["field"] == "name"

        await b.op("u-2", "patch_line", {"qty": 2})  # no line_id param
        nack = await b.frame()
        assert (nack["type"], nack["id"]) == ("nack", "u-2"), nack
        assert (nack["error"]["code"], nack["error"]["field"]) == ("invalid_field", "line_id")

        await b.op("u-3", "add_line", {"sku": "A-1", "qty": 0}, if_match=None)
        nack = await b.frame()
        assert (nack["type"], nack["id"]) == ("nack", "u-3"), nack
        assert nack["error"]["code"] == "invalid_field"  # its field: see the test below

        await b.op("u-4", "patch_line", {"qty": 2}, params={"line_id": "L404"})
        nack = await b.frame()
        assert (nack["id"], nack["error"]["code"]) == ("u-4", "line_not_found"), nack

        await b.op("u-5", "add_line", {"sku": "A-1"}, if_match=7)
        nack = await b.frame()
        assert (nack["id"], nack["error"]["code"]) == ("u-5", "revision_mismatch"), nack

        await b.quiet()  # no events: nothing changed
        await b.send({"type": "ping"})
        assert await b.frame() == {"type": "pong"}


@pytest.mark.parametrize(
    "body",
    [{"sku": "A-1", "qty": 0}, {"qty": 2}, {"sku": "A-1", "colour": "red"}],
    ids=["qty-zero", "no-sku", "unknown-field"],
)
async def test_a_bad_body_gets_the_same_error_over_rest_and_as_an_op(
    service: ServiceProcess, tokens: Tokens, customer_id: str, body: Frame
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(service, token) as a, live(service, token) as b:
        r = await a.post("/v1/cart/lines", json=body)
        assert r.status_code == 422, r.text
        rest_error = r.json()["error"]
        assert rest_error["code"] == "invalid_field"
        await b.op("bad-1", "add_line", body)
        nack = await b.frame()
        assert nack["type"] == "nack", nack
        assert (nack["error"]["code"], nack["error"].get("field")) == (
            rest_error["code"],
            rest_error.get("field"),
        ), (nack, rest_error)


async def test_an_op_retried_over_rest_with_the_same_key_is_applied_once(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    body = {"sku": "BOTH", "qty": 2}
    key = f"op-{uuid.uuid4().hex}"
    async with live(service, token) as b, rest(service, token) as a:
        await b.sync(0)
        await b.op(key, "add_line", body)
        ack, event = await ack_and_event(b)
        assert (ack["status"], ack["replayed"]) == (201, False)

        r = await a.post("/v1/cart/lines", json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 201, r.text
        assert r.headers.get("Idempotent-Replayed") == "true"
        assert r.json() == ack["result"]
        await b.quiet()  # one event only

        r = await a.post(
            "/v1/cart/lines", json={"sku": "BOTH", "qty": 3}, headers={"Idempotency-Key": key}
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "idempotency_key_reused"

        history = (await a.get("/v1/cart/history", params={"since": 0})).json()
        assert [(e["rev"], e["type"]) for e in history["events"]] == [(1, "line.added")]
        assert history["events"][0] == event

    # The other way round: REST first, then the op with the same key.
    key2 = f"rest-{uuid.uuid4().hex}"
    async with rest(service, token) as a, live(service, token) as b:
        await b.sync(1)
        r = await a.post("/v1/cart/lines", json={"sku": "R"}, headers={"Idempotency-Key": key2})
        assert r.status_code == 201, r.text
        assert [e["rev"] for e in await b.events(1)] == [2]
        await b.op(key2, "add_line", {"sku": "R"})
        ack = await b.frame()
        assert (ack["type"], ack["status"], ack["replayed"]) == ("ack", 201, True)
        assert ack["result"] == r.json()
        await b.quiet()


# Isolation and roles ----------------------------------------------------------------------


async def test_a_socket_only_ever_sees_its_own_customers_events(
    instances: tuple[ServiceProcess, ServiceProcess], tokens: Tokens
) -> None:
    one, two = instances
    ann, bob = (f"cust-{uuid.uuid4().hex[:12]}" for _ in range(2))
    ann_token, bob_token = tokens.token("customer", ann), tokens.token("customer", bob)
    async with (
        live(two, ann_token) as ann_sock,
        live(two, bob_token) as bob_sock,
        rest(one, ann_token) as ann_http,
        rest(two, bob_token) as bob_http,
    ):
        await ann_sock.sync(0)
        await bob_sock.sync(0)
        await asyncio.gather(
            add_lines(ann_http, [f"ANN-{n}" for n in range(20)]),
            add_lines(bob_http, [f"BOB-{n}" for n in range(20)]),
        )
        for sock, who, prefix in ((ann_sock, ann, "ANN-"), (bob_sock, bob, "BOB-")):
            events = await sock.events(20)
            assert [e["rev"] for e in events] == list(range(1, 21))
            assert {e["actor"]["id"] for e in events} == {who}
            assert all(e["data"]["line"]["sku"].startswith(prefix) for e in events)
            await sock.quiet()


@pytest.mark.parametrize(
    ("role", "store"), [("service", None), ("staff", "store-1")], ids=["service", "staff"]
)
async def test_tokens_without_a_cart_of_their_own_are_refused(
    service: ServiceProcess, tokens: Tokens, role: str, store: str | None
) -> None:
    token = tokens.token(role, f"{role}-1", store=store)
    async with dial(service, subprotocols=bearer(token)) as ws:
        assert await close_code(ws) == 1008
    async with dial(service) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert await close_code(ws) == 1008


async def test_a_guest_gets_its_own_live_events(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        r = await http.post("/v1/guest")
        assert r.status_code == 201, r.text
        guest_token = r.json()["token"]
    async with live(service, guest_token) as b, rest(service, guest_token) as a:
        assert b.hello["owner"].startswith("g:")
        await b.sync(0)
        await add_lines(a, ["G-1"])
        [event] = await b.events(1)
        assert (event["rev"], event["actor"]["role"]) == (1, "guest")


# Auth and bad input -----------------------------------------------------------------------


async def test_no_token_and_no_auth_message_is_closed_after_the_timeout(
    strict: ServiceProcess, tokens: Tokens
) -> None:
    async with dial(strict) as ws:
        assert await close_code(ws) == 1008
    await still_serving(strict, tokens)


async def test_an_auth_message_as_first_frame_authenticates(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    for subprotocols in (None, [Subprotocol("cartsync.v1")]):
        async with dial(strict, subprotocols=subprotocols) as ws:
            assert ws.subprotocol == (None if subprotocols is None else "cartsync.v1")
            await ws.send(json.dumps({"type": "auth", "token": token}))
            hello = await next_frame(ws)
            assert hello["type"] == "hello", hello
            assert (hello["rev"], hello["owner"]) == (0, f"c:{customer_id}")
            await ws.send(json.dumps({"type": "sync"}))
            assert (await next_frame(ws))["type"] == "snapshot"
            # A second auth refreshes the socket's token; one for another caller ends it.
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert (await next_frame(ws))["type"] == "authenticated"
            other = tokens.token("customer", customer_id + "-other")
            await ws.send(json.dumps({"type": "auth", "token": other}))
            assert await close_code(ws) == 1008


async def wait_past(token: str) -> None:
    """Sleep (bounded) until the token's ``exp`` has passed."""
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    for _ in range(60):
        if time.time() > expires + 0.2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the token did not expire within 6 s")


async def test_a_socket_whose_token_expires_is_closed_with_4401(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id, ttl_s=2)
    async with dial(strict, subprotocols=bearer(token)) as ws:
        hello = await next_frame(ws)
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        assert hello["expires_at"] == exp  # strict has no leeway
        await wait_past(token)
        assert await close_code(ws) == 4401  # not 1008: the token was good, and ran out


async def test_a_fresh_auth_keeps_a_socket_open_past_its_first_token(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    first = tokens.token("customer", customer_id, ttl_s=2)
    async with live(strict, first) as sock, rest(strict, first) as http:
        await sock.sync(0)
        fresh = tokens.token("customer", customer_id, ttl_s=3600)
        await sock.send({"type": "auth", "token": fresh})
        accepted = await sock.frame()
        assert accepted["type"] == "authenticated"
        assert accepted["expires_at"] > time.time() + 3000
        await wait_past(first)
        http.headers["Authorization"] = f"Bearer {fresh}"
        await add_lines(http, ["AFTER-REFRESH"])
        (event,) = await sock.events(1)
        assert event["rev"] == 1


@pytest.mark.parametrize("which", ["garbage", "expired", "another-customer", "staff"])
async def test_a_refresh_that_is_not_a_fresh_token_for_the_same_caller_closes_1008(
    strict: ServiceProcess, tokens: Tokens, customer_id: str, which: str
) -> None:
    token = tokens.token("customer", customer_id)
    refresh = {
        "garbage": "not-a-token",
        "expired": tokens.token("customer", customer_id, ttl_s=1),
        "another-customer": tokens.token("customer", customer_id + "-x"),
        "staff": tokens.token("staff", customer_id, store="s1"),
    }[which]
    if which == "expired":
        await wait_past(refresh)
    async with live(strict, token) as sock:
        await sock.send({"type": "auth", "token": refresh})
        assert await sock.close_code() == 1008


@pytest.mark.parametrize("how", ["subprotocol", "auth_message"])
async def test_a_garbage_token_is_closed_with_1008(
    strict: ServiceProcess, tokens: Tokens, how: str
) -> None:
    garbage = "not.a.jwt"
    if how == "subprotocol":
        async with dial(strict, subprotocols=bearer(garbage)) as ws:
            assert await close_code(ws) == 1008
    else:
        async with dial(strict) as ws:
            await ws.send(json.dumps({"type": "auth", "token": garbage}))
            assert await close_code(ws) == 1008
    await still_serving(strict, tokens)


async def test_a_token_signed_with_another_key_is_closed_with_1008(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    claims = jwt.decode(tokens.token("customer", customer_id), options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-" + "y" * 32, algorithm="HS256")
    async with dial(strict, subprotocols=bearer(forged)) as ws:
        assert await close_code(ws) == 1008
    await still_serving(strict, tokens)


async def test_an_expired_token_is_closed_with_1008(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    # The issuer refuses a negative lifetime: mint a 1 s token and let it run out (strict has
    # no leeway).
    token = tokens.token("customer", customer_id, ttl_s=1)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    for _ in range(40):
        if time.time() > expires + 0.2:
            break
        await asyncio.sleep(0.1)
    assert time.time() > expires
    async with dial(strict, subprotocols=bearer(token)) as ws:
        assert await close_code(ws) == 1008
    async with dial(strict) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert await close_code(ws) == 1008
    await still_serving(strict, tokens)


@pytest.mark.parametrize(
    "first",
    [{"type": "sync", "since": 0}, {"type": "ping"}, {"type": "auth"}, {"type": "auth", "x": 1}],
    ids=["sync", "ping", "auth-without-token", "auth-with-unknown-field"],
)
async def test_a_first_message_that_is_not_auth_is_closed_with_1008(
    strict: ServiceProcess, tokens: Tokens, first: Frame
) -> None:
    async with dial(strict) as ws:
        await ws.send(json.dumps(first))
        assert await close_code(ws) == 1008
    await still_serving(strict, tokens)


async def test_invalid_json_is_closed_with_1007(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(strict, tokens.token("customer", customer_id)) as b:
        await b.ws.send('{"type": "sync", "since": ')
        assert await b.close_code() == 1007
    async with dial(strict) as ws:  # also as the first, unauthenticated message
        await ws.send("hello?")
        assert await close_code(ws) == 1007
    await still_serving(strict, tokens)


async def test_a_binary_frame_is_closed_with_1003(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with live(strict, tokens.token("customer", customer_id)) as b:
        await b.ws.send(b'{"type":"ping"}')
        assert await b.close_code() == 1003
    await still_serving(strict, tokens)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "channel": "cs:{c:someone-else}:ch"},
        {"type": "ping", "extra": True},
        {"type": "sync", "since": -1},
        {"type": "sync", "since": "5"},
        {"type": "op", "id": "has space", "name": "add_line", "body": {"sku": "A"}},
        {"type": "op", "id": "x", "name": "add_line", "body": {"sku": "A"}, "owner": "c:other"},
        {"no": "type"},
        ["type", "ping"],
    ],
    ids=[
        "unknown-type",
        "unknown-field",
        "negative-since",
        "string-since",
        "bad-op-id",
        "op-unknown-field",
        "no-type",
        "not-an-object",
    ],
)
async def test_a_malformed_frame_is_closed_with_1008(
    strict: ServiceProcess, tokens: Tokens, customer_id: str, frame: object
) -> None:
    async with live(strict, tokens.token("customer", customer_id)) as b:
        await b.ws.send(json.dumps(frame))
        assert await b.close_code() == 1008
    await still_serving(strict, tokens)


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_a_message_over_64_kib_is_closed_with_1009(
    strict: ServiceProcess, tokens: Tokens, customer_id: str, compression: str | None
) -> None:
    token = tokens.token("customer", customer_id)
    big = json.dumps(
        {"type": "op", "id": "big", "name": "set_note", "body": {"note": "x" * 70_000}}
    )
    async with live(strict, token, compression=compression) as b:
        await b.ws.send(big)
        assert await b.close_code() == 1009
    # Just under the limit is read (and refused by the protocol, not the size check).
    async with live(strict, token, compression=compression) as b:
        near = {"type": "op", "id": "near", "name": "set_note", "body": {"note": "x" * 60_000}}
        await b.send(near)
        nack = await b.frame()
        assert (nack["type"], nack["error"]["code"]) == ("nack", "invalid_field"), nack
    await still_serving(strict, tokens)


async def test_only_allowed_origins_may_open_a_socket(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    with pytest.raises(InvalidStatus) as refused:
        async with dial(strict, subprotocols=bearer(token), origin=Origin("https://evil.example")):
            pass
    assert refused.value.response.status_code == 403
    async with live(strict, token, origin=Origin(SHOP)) as b:
        assert b.hello["owner"] == f"c:{customer_id}"
    async with live(strict, token) as b:  # native apps send no Origin
        assert b.hello["owner"] == f"c:{customer_id}"


async def test_a_customer_gets_at_most_the_configured_number_of_sockets(
    strict: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with live(strict, token) as first, live(strict, token):
        async with dial(strict, subprotocols=bearer(token)) as third:
            assert await close_code(third) == 1008
        # Other customers are not affected, and the two sockets still work.
        await still_serving(strict, tokens)
        await first.send({"type": "ping"})
        assert await first.frame() == {"type": "pong"}
    # Closing sockets frees their places (the server notices the close shortly after).
    for _ in range(50):
        async with dial(strict, subprotocols=bearer(token)) as ws:
            with contextlib.suppress(ConnectionClosed):
                if (await next_frame(ws))["type"] == "hello":
                    break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the customer never got a socket again")


# Heartbeats -------------------------------------------------------------------------------


async def test_a_client_that_never_answers_pings_is_closed_with_1001(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    with running(redis_server.url, tmp_path, CARTSYNC_WS_PING_INTERVAL_SECONDS="0.5") as fast:
        async with live(fast, token) as silent, live(fast, token) as awake:
            await silent.sync(0)
            await awake.sync(0)

            async def ignore_everything() -> int:
                pings = 0
                try:
                    async with asyncio.timeout(IO_TIMEOUT_S):
                        for _ in range(MAX_FRAMES):
                            if json.loads(await silent.ws.recv()) == {"type": "ping"}:
                                pings += 1
                except ConnectionClosed:
                    return pings
                raise AssertionError("a silent client was never closed")

            async def answer_pings() -> int:
                pings = 0
                async with asyncio.timeout(2 * IO_TIMEOUT_S):
                    for _ in range(MAX_FRAMES):
                        try:
                            raw = await asyncio.wait_for(awake.ws.recv(), 1)
                        except TimeoutError:
                            continue
                        if json.loads(raw) == {"type": "ping"}:
                            pings += 1
                            await awake.send({"type": "pong"})
                        if silent.ws.close_code is not None and pings >= 6:
                            return pings
                raise AssertionError("the answering client saw too few pings")

            silent_pings, awake_pings = await asyncio.gather(ignore_everything(), answer_pings())
            assert silent.ws.close_code == 1001
            assert silent_pings >= 1
            assert awake_pings >= 6
            # The client that answered is still open and live.
            async with rest(fast, token) as a:
                await add_lines(a, ["STILL-HERE"])
            [event] = await awake.events(1)
            assert event["data"]["line"]["sku"] == "STILL-HERE"


# Shutdown ---------------------------------------------------------------------------------


async def test_sigterm_closes_sockets_with_1001_and_the_process_exits_0(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    proc = ServiceProcess(service_env(redis_server.url, tmp_path)).start()
    try:
        assert proc.proc is not None
        ann, bob = (tokens.token("customer", f"cust-{uuid.uuid4().hex[:12]}") for _ in range(2))
        async with live(proc, ann) as a, live(proc, ann) as a2, live(proc, bob) as b:
            await a.sync(0)
            await b.sync()
            assert (await b.frame())["type"] == "snapshot"
            proc.proc.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(a.close_code(), a2.close_code(), b.close_code())
            assert codes == [1001, 1001, 1001]
        code = await asyncio.to_thread(proc.proc.wait, 15)
        assert code == 0, proc.log()
    finally:
        proc.stop()
