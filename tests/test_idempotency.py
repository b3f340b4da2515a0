"""Idempotency-Key: a retried request is applied once and answered with the first response."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

IO_TIMEOUT_S = 15


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_http_message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (all that httpx and Hypercorn send here)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + await reader.readexactly(length)


def parse_reply(raw: bytes) -> RawReply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawReply(int(status_line.split()[1]), headers, body)


class SwallowingProxy:
    """A loopback TCP proxy that forwards requests to the service but never relays the replies.

    The service does the work and answers; the proxy keeps the answer and hangs up on the client
    (``hang_up=True``) or keeps the client waiting until it gives up (``hang_up=False``): from
    the client's side, a dropped connection or a timeout after the request went out.
    """

    def __init__(self, upstream_port: int, *, hang_up: bool) -> None:
        self.upstream_port = upstream_port
        self.hang_up = hang_up
        self.replies: list[RawReply] = []
        self.swallowed = asyncio.Event()
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SwallowingProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            async with asyncio.timeout(IO_TIMEOUT_S):
                up_w.write(await read_http_message(client_r))
                await up_w.drain()
                self.replies.append(parse_reply(await read_http_message(up_r)))
                self.swallowed.set()
                if not self.hang_up:
                    await client_r.read()  # until the client times out and closes
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            client_w.transport.abort()
            up_w.close()


Request = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


async def add_line(c: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await c.post("/v1/cart/lines", json={"sku": "SKU-1", "qty": 2}, headers=headers)


async def add_item(c: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await c.post("/v1/wishlists/default/items", json={"sku": "SKU-1"}, headers=headers)


async def checkout(c: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await c.post("/v1/cart/checkout", headers=headers)


async def state(c: httpx.AsyncClient) -> dict[str, Any]:
    """Everything a retry could change: cart, wishlists and the event log."""
    cart = await c.get("/v1/cart")
    lists = await c.get("/v1/wishlists")
    log = await c.get("/v1/cart/history", params={"since": 0})
    assert {cart.status_code, lists.status_code, log.status_code} == {200}
    return {"cart": cart.json(), "wishlists": lists.json(), "history": log.json()}


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


@pytest.mark.parametrize("hang_up", [True, False], ids=["connection-dropped", "client-timeout"])
@pytest.mark.parametrize(
    ("request_", "status"),
    [(add_line, 201), (add_item, 201), (checkout, 200)],
    ids=["add-line", "add-wishlist-item", "checkout"],
)
async def test_retry_after_lost_response_applies_once(
    alice: httpx.AsyncClient, service: ServiceProcess, request_: Request, status: int, hang_up: bool
) -> None:
    assert (await alice.post("/v1/cart/lines", json={"sku": "SETUP"})).status_code == 201
    before = await state(alice)
    key = {"Idempotency-Key": new_key()}

    proxy = SwallowingProxy(service.port, hang_up=hang_up)
    async with proxy.running():
        timeout = httpx.Timeout(IO_TIMEOUT_S, read=IO_TIMEOUT_S if hang_up else 1.0)
        async with httpx.AsyncClient(
            base_url=proxy.url, headers=alice.headers, timeout=timeout
        ) as flaky:
            with pytest.raises(httpx.TransportError):
                await request_(flaky, key)
        async with asyncio.timeout(IO_TIMEOUT_S):
            await proxy.swallowed.wait()
    [first] = proxy.replies
    assert first.status == status, first.body
    assert "idempotent-replayed" not in first.headers

    retry = await request_(alice, key)
    assert retry.status_code == status, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.body

    after = await state(alice)
    assert after["cart"]["rev"] == before["cart"]["rev"] + 1
    new_events = after["history"]["events"][len(before["history"]["events"]) :]
    assert len(new_events) == 1
    if request_ is add_line:
        assert {x["sku"]: x["qty"] for x in after["cart"]["lines"]} == {"SETUP": 1, "SKU-1": 2}
    if request_ is checkout:
        assert after["cart"]["cart_id"] == retry.json()["cart_id"]
        assert after["cart"]["lines"] == []

    # A third try is still a replay and still changes nothing.
    third = await request_(alice, key)
    assert third.content == first.body
    assert await state(alice) == after


async def test_replay_returns_the_first_response_after_later_changes(
    alice: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": new_key()}
    first = await add_line(alice, key)
    assert first.status_code == 201
    assert (await alice.post("/v1/cart/lines", json={"sku": "OTHER"})).status_code == 201
    before = await state(alice)

    retry = await add_line(alice, key)
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert await state(alice) == before


async def test_same_key_with_a_different_body_is_refused(alice: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": new_key()}
    assert (await add_line(alice, key)).status_code == 201
    before = await state(alice)

    other_body = await alice.post("/v1/cart/lines", json={"sku": "SKU-1", "qty": 3}, headers=key)
    other_route = await add_item(alice, key)
    for r in (other_body, other_route):
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "idempotency_key_reused"
        assert r.json()["error"]["field"] == "Idempotency-Key"
        assert "idempotent-replayed" not in r.headers
    assert await state(alice) == before


async def test_keys_are_scoped_to_the_owner(
    alice: httpx.AsyncClient, service: ServiceProcess, tokens: Tokens
) -> None:
    key = {"Idempotency-Key": new_key()}
    headers = tokens.headers("customer", f"bob-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as bob:
        for who in (alice, bob):
            r = await add_line(who, key)
            assert r.status_code == 201, r.text
            assert "idempotent-replayed" not in r.headers
            assert r.json()["rev"] == 1
        for who in (alice, bob):
            cart = (await who.get("/v1/cart")).json()
            assert [(x["sku"], x["qty"]) for x in cart["lines"]] == [("SKU-1", 2)]
            assert cart["rev"] == 1


@pytest.mark.parametrize(
    "bad_key",
    ["has space", "x" * 300, "x" * 256, "", "ключ", "tab\x7f"],
    ids=["space", "300-chars", "256-chars", "empty", "non-ascii", "delete-char"],
)
async def test_invalid_key_is_a_bad_header(alice: httpx.AsyncClient, bad_key: str) -> None:
    before = await state(alice)
    r = await alice.post(
        "/v1/cart/lines",
        json={"sku": "SKU-1"},
        headers={"Idempotency-Key": bad_key.encode()},  # raw UTF-8 bytes for the non-ASCII case
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_header"
    assert r.json()["error"]["field"] == "Idempotency-Key"
    assert await state(alice) == before


async def test_longest_valid_key_is_accepted(alice: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k" * 255}
    assert (await add_line(alice, key)).status_code == 201
    assert (await add_line(alice, key)).headers["idempotent-replayed"] == "true"
    assert (await alice.get("/v1/cart")).json()["lines"][0]["qty"] == 2


async def test_without_a_key_identical_requests_apply_twice(alice: httpx.AsyncClient) -> None:
    first = await add_line(alice, {})
    second = await add_line(alice, {})
    assert (first.status_code, second.status_code) == (201, 200)
    assert "idempotent-replayed" not in second.headers
    after = await state(alice)
    assert [(x["sku"], x["qty"]) for x in after["cart"]["lines"]] == [("SKU-1", 4)]
    assert [e["type"] for e in after["history"]["events"]] == ["line.added", "line.updated"]
