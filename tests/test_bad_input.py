"""Bad input gets a precise error and changes nothing; the service keeps answering."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

NO_BODY: Any = object()
JSON = {"content-type": "application/json"}
BIG = 64 * 1024 + 1


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # {line}, {wishlist} and {item} are replaced by the fixture's real ids
    status: int
    code: str
    field: str | None = None  # None: the error names no field
    json: Any = NO_BODY
    content: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def add(
    body: Any,
    *,
    id: str,
    status: int = 422,
    code: str = "invalid_field",
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Case:
    """A case of POST /v1/cart/lines, the route most clients call most."""
    return Case(id, "POST", "/v1/cart/lines", status, code, field, body, headers=headers or {})


# fmt: off
CASES = [
    # Not JSON, or not a JSON object
    Case("malformed-json", "POST", "/v1/cart/lines", 400, "malformed_json",
         content=b'{"sku": "A"', headers=JSON),
    Case("not-json", "POST", "/v1/cart/lines", 400, "malformed_json",
         content=b"sku=A&qty=1", headers=JSON),
    add([{"sku": "A"}], id="json-array"),
    add("A", id="json-string"),
    Case("json-null", "POST", "/v1/cart/lines", 422, "invalid_field", content=b"null",
         headers=JSON),
    Case("invalid-utf8", "POST", "/v1/cart/lines", 400, "malformed_json",
         content=b'{"sku":"\xff\xfe","qty":1}', headers=JSON),
    Case("invalid-utf8-in-unknown-field", "POST", "/v1/cart/lines", 400, "malformed_json",
         content=b'{"sku":"A","x\xff":1}', headers=JSON),
    Case("nested-1000-deep", "POST", "/v1/cart/lines", 400, "too_deep",
         content=b"[" * 1000 + b"]" * 1000, headers=JSON),
    Case("nested-1000-deep-unclosed", "POST", "/v1/cart/lines", 400, "too_deep",
         content=b'{"sku":"A","attrs":' + b"[" * 1000, headers=JSON),
    Case("nested-1000-deep-in-a-field", "PUT", "/v1/cart/note", 400, "too_deep",
         content=b'{"note":' + b"[" * 1000 + b"]" * 1000 + b"}", headers=JSON),
    # Duplicate keys: msgspec keeps the last one, which the caller may not have meant
    Case("duplicate-key", "POST", "/v1/cart/lines", 400, "duplicate_key", "sku",
         content=b'{"sku":"A","qty":1,"sku":"B","qty":5}', headers=JSON),
    Case("duplicate-key-nested", "POST", "/v1/cart/lines", 400, "duplicate_key", "size",
         content=b'{"sku":"A","attrs":{"size":"M","size":"L"}}', headers=JSON),
    Case("duplicate-key-with-a-bad-value", "POST", "/v1/cart/lines", 400, "duplicate_key",
         "qty", content=b'{"sku":"A","qty":"x","qty":2}', headers=JSON),
    Case("empty-body-means-missing-sku", "POST", "/v1/cart/lines", 422, "invalid_field", "sku",
         content=b"", headers=JSON),
    # Wrong types and unknown fields
    add({"sku": "A", "qty": "1"}, id="qty-string", field="qty"),
    add({"sku": "A", "qty": 1.5}, id="qty-float", field="qty"),
    add({"sku": "A", "qty": None}, id="qty-null", field="qty"),
    add({"sku": "A", "qty": True}, id="qty-bool", field="qty"),
    add({"sku": "A", "attrs": ["size", "M"]}, id="attrs-list", field="attrs"),
    add({"sku": "A", "colour": "red"}, id="unknown-field", field="colour"),
    add({"qty": 1}, id="missing-sku", field="sku"),
    # sku format [A-Za-z0-9._:-]{1,64}
    add({"sku": ""}, id="sku-empty", field="sku"),
    add({"sku": "A" * 65}, id="sku-65-chars", field="sku"),
    add({"sku": "A B"}, id="sku-space", field="sku"),
    add({"sku": "A{B}"}, id="sku-brace", field="sku"),
    add({"sku": "Ä"}, id="sku-unicode", field="sku"),
    add({"sku": "A\n"}, id="sku-newline", field="sku"),
    add({"sku": 12}, id="sku-number", field="sku"),
    # qty 1..999 on add, 0..999 on patch
    add({"sku": "A", "qty": 0}, id="add-qty-0", field="qty"),
    add({"sku": "A", "qty": 1000}, id="add-qty-1000", field="qty"),
    add({"sku": "A", "qty": -1}, id="add-qty-negative", field="qty"),
    Case("patch-qty-negative", "PATCH", "/v1/cart/lines/{line}", 422, "invalid_field", "qty",
         json={"qty": -1}),
    Case("patch-qty-1000", "PATCH", "/v1/cart/lines/{line}", 422, "invalid_field", "qty",
         json={"qty": 1000}),
    Case("patch-nothing", "PATCH", "/v1/cart/lines/{line}", 422, "invalid_field", "qty", json={}),
    # attrs: at most 16, names like skus, values at most 256 characters of text
    add({"sku": "A", "attrs": {f"k{n}": "v" for n in range(17)}}, id="attrs-17-keys",
        field="attrs"),
    add({"sku": "A", "attrs": {"size": "x" * 257}}, id="attr-value-257", field="attrs[...]"),
    add({"sku": "A", "attrs": {"size": 42}}, id="attr-value-number", field="attrs[...]"),
    add({"sku": "A", "attrs": {"size": None}}, id="attr-value-null", field="attrs[...]"),
    add({"sku": "A", "attrs": {"size\n": "M"}}, id="attr-name-newline", field="attrs"),
    add({"sku": "A", "attrs": {"a b": "M"}}, id="attr-name-space", field="attrs"),
    Case("patch-attrs-17-keys", "PATCH", "/v1/cart/lines/{line}", 422, "invalid_field",
         "attrs", json={"attrs": {f"k{n}": "v" for n in range(17)}}),
    # Other fields
    add({"sku": "A", "title": ""}, id="title-empty", field="title"),
    add({"sku": "A", "title": "x" * 201}, id="title-201", field="title"),
    add({"sku": "A", "unit_price": "1,00"}, id="price-comma", field="unit_price"),
    add({"sku": "A", "unit_price": 1.5}, id="price-number", field="unit_price"),
    add({"sku": "A", "unit_price": "1.50\n"}, id="price-newline", field="unit_price"),
    Case("note-1001", "PUT", "/v1/cart/note", 422, "invalid_field", "note",
         json={"note": "n" * 1001}),
    Case("note-missing", "PUT", "/v1/cart/note", 422, "invalid_field", "note", json={}),
    Case("note-number", "PUT", "/v1/cart/note", 422, "invalid_field", "note", json={"note": 1}),
    Case("wishlist-name-empty", "POST", "/v1/wishlists", 422, "invalid_field", "name",
         json={"name": ""}),
    Case("wishlist-name-blank", "POST", "/v1/wishlists", 422, "invalid_field", "name",
         json={"name": "   "}),
    Case("wishlist-name-65", "POST", "/v1/wishlists", 422, "invalid_field", "name",
         json={"name": "n" * 65}),
    Case("rename-empty", "PATCH", "/v1/wishlists/{wishlist}", 422, "invalid_field", "name",
         json={"name": ""}),
    Case("item-sku-brace", "POST", "/v1/wishlists/{wishlist}/items", 422, "invalid_field",
         "sku", json={"sku": "{x}"}),
    Case("item-note-1001", "POST", "/v1/wishlists/{wishlist}/items", 422, "invalid_field",
         "note", json={"sku": "A", "note": "n" * 1001}),
    Case("move-qty-0", "POST", "/v1/wishlists/{wishlist}/items/{item}/move-to-cart", 422,
         "invalid_field", "qty", json={"qty": 0}),
    Case("history-since-word", "GET", "/v1/cart/history?since=abc", 422, "invalid_field",
         "since"),
    Case("history-since-negative", "GET", "/v1/cart/history?since=-1", 422, "invalid_field",
         "since"),
    Case("history-since-over-2^53-1", "GET", "/v1/cart/history?since=9007199254740992", 422,
         "invalid_field", "since"),
    Case("history-since-superscript-digit", "GET", "/v1/cart/history?since=%C2%B2", 422,
         "invalid_field", "since"),
    Case("history-limit-arabic-digits", "GET", "/v1/cart/history?limit=%D9%A1", 422,
         "invalid_field", "limit"),
    # Size and media type
    add({"sku": "A", "title": "x" * BIG}, id="body-over-64k", status=413,
        code="payload_too_large"),
    add({"sku": "A", "title": "x" * 60_000}, id="body-under-64k-is-decoded", field="title"),
    Case("text-plain", "POST", "/v1/cart/lines", 415, "unsupported_media_type", "Content-Type",
         content=b'{"sku": "A"}', headers={"content-type": "text/plain"}),
    Case("form-encoded", "POST", "/v1/cart/lines", 415, "unsupported_media_type",
         "Content-Type", content=b"sku=A",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("no-content-type", "POST", "/v1/cart/lines", 415, "unsupported_media_type",
         "Content-Type", content=b'{"sku": "A"}'),
    # Unknown ids
    Case("patch-unknown-line", "PATCH", "/v1/cart/lines/L999", 404, "line_not_found",
         "line_id", json={"qty": 2}),
    Case("patch-qty-0-unknown-line", "PATCH", "/v1/cart/lines/L999", 404, "line_not_found",
         "line_id", json={"qty": 0}),
    Case("patch-item-id-as-line", "PATCH", "/v1/cart/lines/{item}", 404, "line_not_found",
         "line_id", json={"qty": 2}),
    Case("delete-unknown-line", "DELETE", "/v1/cart/lines/L999", 404, "line_not_found",
         "line_id"),
    Case("save-unknown-line", "POST", "/v1/cart/lines/L999/save-for-later", 404,
         "line_not_found", "line_id"),
    Case("get-unknown-wishlist", "GET", "/v1/wishlists/w999", 404, "wishlist_not_found",
         "wishlist_id"),
    Case("rename-unknown-wishlist", "PATCH", "/v1/wishlists/w999", 404, "wishlist_not_found",
         "wishlist_id", json={"name": "x"}),
    Case("delete-unknown-wishlist", "DELETE", "/v1/wishlists/w999", 404, "wishlist_not_found",
         "wishlist_id"),
    Case("add-to-unknown-wishlist", "POST", "/v1/wishlists/w999/items", 404,
         "wishlist_not_found", "wishlist_id", json={"sku": "A"}),
    Case("remove-unknown-item", "DELETE", "/v1/wishlists/{wishlist}/items/i999", 404,
         "item_not_found", "item_id"),
    Case("remove-item-of-another-wishlist", "DELETE", "/v1/wishlists/default/items/{item}",
         404, "item_not_found", "item_id"),
    Case("move-item-of-another-wishlist", "POST",
         "/v1/wishlists/default/items/{item}/move-to-cart", 404, "item_not_found", "item_id",
         json={}),
    Case("remove-item-unknown-wishlist", "DELETE", "/v1/wishlists/w999/items/{item}", 404,
         "wishlist_not_found", "wishlist_id"),
    Case("move-unknown-item", "POST", "/v1/wishlists/{wishlist}/items/i999/move-to-cart", 404,
         "item_not_found", "item_id", json={}),
    Case("move-line-id-as-item", "POST", "/v1/wishlists/{wishlist}/items/{line}/move-to-cart",
         404, "item_not_found", "item_id", json={}),
    # Headers
    add({"sku": "A"}, id="if-match-stale", status=412, code="revision_mismatch",
        field="If-Match", headers={"If-Match": '"1"'}),
    add({"sku": "A"}, id="if-match-word", status=400, code="bad_header", field="If-Match",
        headers={"If-Match": "latest"}),
    add({"sku": "A"}, id="if-match-negative", status=400, code="bad_header", field="If-Match",
        headers={"If-Match": '"-1"'}),
    add({"sku": "A"}, id="if-match-list", status=400, code="bad_header", field="If-Match",
        headers={"If-Match": '"3", "4"'}),
    *(add({"sku": "A"}, id=f"if-match-{name}", status=400, code="bad_header", field="If-Match",
          headers={"If-Match": value})
      for name, value in [("unbalanced-open", '"3'), ("unbalanced-close", '3"'),
                          ("bare-number", "3"), ("weak-unbalanced", 'W/"3'),
                          ("over-2^53-1", '"9007199254740992"')]),
    add({"sku": "A"}, id="device-id-space", status=400, code="bad_header", field="X-Device-Id",
        headers={"X-Device-Id": "my phone"}),
    # Routes
    Case("unknown-route", "GET", "/v1/carts", 404, "route_not_found"),
    Case("unknown-route-outside-v1", "GET", "/cart", 404, "route_not_found"),
    Case("wrong-method-on-cart", "PUT", "/v1/cart", 405, "method_not_allowed", json={}),
    Case("wrong-method-on-history", "DELETE", "/v1/cart/history", 405, "method_not_allowed"),
    Case("wrong-method-on-line", "GET", "/v1/cart/lines/{line}", 405, "method_not_allowed"),
]
# fmt: on


@dataclass(frozen=True)
class Shop:
    """A customer with one line, one wishlist holding one item: the ids the cases refer to."""

    client: httpx.AsyncClient
    line: str
    wishlist: str
    item: str

    def path(self, template: str) -> str:
        return template.format(line=self.line, wishlist=self.wishlist, item=self.item)


async def setup_shop(c: httpx.AsyncClient) -> Shop:
    line = await c.post("/v1/cart/lines", json={"sku": "BASE", "attrs": {"size": "M"}})
    wishlist = await c.post("/v1/wishlists", json={"name": "Gifts"})
    wishlist_id = wishlist.json()["wishlist"]["id"]
    item = await c.post(f"/v1/wishlists/{wishlist_id}/items", json={"sku": "WISH"})
    assert [line.status_code, wishlist.status_code, item.status_code] == [201, 201, 201]
    return Shop(c, line.json()["line"]["id"], wishlist_id, item.json()["item"]["id"])


@pytest.fixture
async def shop(service: ServiceProcess, tokens: Tokens, customer_id: str) -> AsyncIterator[Shop]:
    # A connection per request: see test_refusal_before_the_body_leaves_a_usable_connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    headers = tokens.headers("customer", customer_id)
    async with httpx.AsyncClient(
        base_url=service.url, headers=headers, timeout=10, limits=limits
    ) as c:
        yield await setup_shop(c)


async def everything(c: httpx.AsyncClient) -> tuple[bytes, ...]:
    """Cart, wishlists and history as sent: any change, even of rev, shows up."""
    parts = []
    for path in ("/v1/cart", "/v1/wishlists", "/v1/cart/history?since=0"):
        r = await c.get(path)
        assert r.status_code == 200, r.text
        parts.append(r.content)
    return tuple(parts)


def check_error(r: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error.get("field") == field, error


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_changes_nothing(shop: Shop, case: Case) -> None:
    before = await everything(shop.client)
    kw: dict[str, Any] = {"headers": case.headers}
    if case.json is not NO_BODY:
        kw["json"] = case.json
    if case.content is not None:
        kw["content"] = case.content
    r = await shop.client.request(case.method, shop.path(case.path), **kw)
    check_error(r, case.status, case.code, case.field)
    if case.status == 412:
        assert r.headers["etag"] == '"3"'
    assert await everything(shop.client) == before


async def test_chunked_body_over_64k_is_refused(shop: Shop) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # One write: with many small chunks the service sometimes resets the connection before
        # the client reads the 413 (see test_refusal_before_the_body_leaves_a_usable_connection).
        yield b'{"sku": "A", "title": "' + b"x" * BIG + b'"}'

    before = await everything(shop.client)
    r = await shop.client.post("/v1/cart/lines", content=chunks(), headers=JSON)
    assert r.request.headers["transfer-encoding"] == "chunked"
    check_error(r, 413, "payload_too_large", None)
    assert await everything(shop.client) == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/cart/lines", {"sku": "A"}),
        ("PATCH", "/v1/cart/lines/{line}", {"qty": 5}),
        ("DELETE", "/v1/cart/lines/{line}", NO_BODY),
        ("DELETE", "/v1/cart", NO_BODY),
        ("PUT", "/v1/cart/note", {"note": "x"}),
        ("POST", "/v1/cart/lines/{line}/save-for-later", NO_BODY),
        ("POST", "/v1/cart/checkout", NO_BODY),
        ("POST", "/v1/wishlists", {"name": "New"}),
        ("PATCH", "/v1/wishlists/{wishlist}", {"name": "New"}),
        ("DELETE", "/v1/wishlists/{wishlist}", NO_BODY),
        ("POST", "/v1/wishlists/{wishlist}/items", {"sku": "B"}),
        ("DELETE", "/v1/wishlists/{wishlist}/items/{item}", NO_BODY),
        ("POST", "/v1/wishlists/{wishlist}/items/{item}/move-to-cart", {}),
    ],
)
async def test_stale_if_match_is_412_with_the_current_etag(
    shop: Shop, method: str, path: str, body: Any
) -> None:
    before = await everything(shop.client)
    kw: dict[str, Any] = {} if body is NO_BODY else {"json": body}
    for stale in ('"0"', '"2"', '"4"', 'W/"1"'):
        r = await shop.client.request(method, shop.path(path), headers={"If-Match": stale}, **kw)
        check_error(r, 412, "revision_mismatch", "If-Match")
        assert r.headers["etag"] == '"3"'
    assert await everything(shop.client) == before
    # The ETag it gave back is the one that works.
    r = await shop.client.request(method, shop.path(path), headers={"If-Match": '"3"'}, **kw)
    assert r.status_code in (200, 201), r.text


async def test_qty_summing_past_999_is_refused(alice: httpx.AsyncClient) -> None:
    full = await alice.post("/v1/cart/lines", json={"sku": "A", "qty": 999})
    assert full.status_code == 201
    item = await alice.post("/v1/wishlists/default/items", json={"sku": "A"})
    before = await everything(alice)
    r = await alice.post("/v1/cart/lines", json={"sku": "A", "qty": 1})
    check_error(r, 422, "limit_exceeded", "qty")
    r = await alice.post(f"/v1/wishlists/default/items/{item.json()['item']['id']}/move-to-cart")
    check_error(r, 422, "limit_exceeded", "qty")
    assert await everything(alice) == before
    # A different line is still fine.
    assert (await alice.post("/v1/cart/lines", json={"sku": "B", "qty": 999})).status_code == 201


async def test_history_since_far_ahead_answers_incomplete(shop: Shop) -> None:
    """Revisions up to 2^53-1 reach the store intact: Lua once wrote 10^14 + 1 as ``1e+14``."""
    for since in (10**14, 10**15 + 1, 2**53 - 1):
        r = await shop.client.get(f"/v1/cart/history?since={since}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["since"], body["complete"], body["events"]) == (since, False, [])


# Refusals and the connection -----------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("role", "path", "size", "status"),
    [
        (None, "/v1/cart/lines", 20, 401),
        ("service", "/v1/cart/lines", 20, 403),
        ("customer", "/v1/cart/lines", BIG, 413),
    ],
    ids=["401-no-token", "403-service-on-own-route", "413-declared-too-large"],
)
async def test_refusal_before_the_body_leaves_a_usable_connection(
    service: ServiceProcess, tokens: Tokens, role: str | None, path: str, size: int, status: int
) -> None:
    """A refusal sent before the body is read either says ``Connection: close`` or keeps the
    connection working; otherwise a pooled client's next request fails out of the blue."""
    auth = f"Authorization: Bearer {tokens.token(role, 'conn-test')}\r\n" if role else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    body = b'{"sku": "' + b"x" * (size - 11) + b'"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    try:
        writer.write(head)
        await writer.drain()
        try:
            # The service answers before it has the body (a server that waits for it is fine too).
            got, headers, _ = await asyncio.wait_for(read_response(reader), 5)
            answered_early = True
        except TimeoutError:
            answered_early = False
        try:
            writer.write(body)
            await writer.drain()
            if not answered_early:
                got, headers, _ = await asyncio.wait_for(read_response(reader), 10)
            assert got == status
            if headers.get("connection", "").lower() == "close":
                return
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            after, _, _ = await asyncio.wait_for(read_response(reader), 10)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            pytest.fail(
                f"after a {status} sent before the body was read, the connection was dropped "
                f"without 'Connection: close' ({exc!r})"
            )
        assert after == 200
    finally:
        writer.close()


# Count limits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_service(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A private service whose carts hold 5 lines and whose wishlists hold 5 items."""
    data_dir: Path = tmp_path_factory.mktemp("small-service")
    env = service_env(
        redis_server.url, data_dir, CARTSYNC_MAX_LINES="5", CARTSYNC_MAX_WISHLIST_ITEMS="5"
    )
    proc = ServiceProcess(env)
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture
async def small(
    small_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = tokens.headers("customer", customer_id)
    async with httpx.AsyncClient(base_url=small_service.url, headers=headers, timeout=30) as c:
        yield c


async def fill(c: httpx.AsyncClient, path: str, count: int, prefix: str) -> None:
    """Add ``count`` distinct skus, 25 requests at a time."""
    for start in range(0, count, 25):
        batch = range(start, min(start + 25, count))
        sent = await asyncio.gather(*(c.post(path, json={"sku": f"{prefix}-{n}"}) for n in batch))
        assert {r.status_code for r in sent} == {201}, [
            r.text for r in sent if r.status_code != 201
        ]


async def test_small_cart_line_limit(small: httpx.AsyncClient) -> None:
    item = (await small.post("/v1/wishlists/default/items", json={"sku": "WISH"})).json()["item"]
    await fill(small, "/v1/cart/lines", 5, "L")
    before = await everything(small)
    r = await small.post("/v1/cart/lines", json={"sku": "ONE-TOO-MANY"})
    check_error(r, 422, "limit_exceeded", "sku")
    r = await small.post(f"/v1/wishlists/default/items/{item['id']}/move-to-cart")
    check_error(r, 422, "limit_exceeded", "sku")
    assert await everything(small) == before
    # A full cart still takes more of a line it holds.
    r = await small.post("/v1/cart/lines", json={"sku": "L-0", "qty": 2})
    assert r.status_code == 200
    assert r.json()["line"]["qty"] == 3


async def test_small_wishlist_item_limit(small: httpx.AsyncClient) -> None:
    wishlist = (await small.post("/v1/wishlists", json={"name": "Gifts"})).json()["wishlist"]
    path = f"/v1/wishlists/{wishlist['id']}/items"
    await fill(small, path, 5, "W")
    before = await everything(small)
    r = await small.post(path, json={"sku": "ONE-TOO-MANY"})
    check_error(r, 422, "limit_exceeded", "sku")
    assert await everything(small) == before
    # Adding what is already there is no new item.
    again = await small.post(path, json={"sku": "W-0"})
    assert again.status_code == 200
    assert again.json()["created"] is False


async def test_small_saved_wishlist_limit(small: httpx.AsyncClient) -> None:
    await fill(small, "/v1/wishlists/saved/items", 5, "S")
    line = (await small.post("/v1/cart/lines", json={"sku": "LINE"})).json()["line"]
    before = await everything(small)
    r = await small.post(f"/v1/cart/lines/{line['id']}/save-for-later")
    check_error(r, 422, "limit_exceeded", "wishlist_id")
    assert await everything(small) == before


async def test_default_limit_of_200_lines(alice: httpx.AsyncClient) -> None:
    await fill(alice, "/v1/cart/lines", 200, "SKU")
    before = await everything(alice)
    r = await alice.post("/v1/cart/lines", json={"sku": "SKU-200"})
    check_error(r, 422, "limit_exceeded", "sku")
    assert await everything(alice) == before
    cart = (await alice.get("/v1/cart")).json()
    assert len(cart["lines"]) == 200
    assert cart["rev"] == 200


async def test_default_limit_of_100_wishlist_items(alice: httpx.AsyncClient) -> None:
    await fill(alice, "/v1/wishlists/default/items", 100, "SKU")
    before = await everything(alice)
    r = await alice.post("/v1/wishlists/default/items", json={"sku": "SKU-100"})
    check_error(r, 422, "limit_exceeded", "sku")
    assert await everything(alice) == before
    default = (await alice.get("/v1/wishlists/default")).json()["wishlist"]
    assert len(default["items"]) == 100


# Last: whatever came before, the service is still up ------------------------------------------


async def test_service_still_answers_after_all_of_it(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
