"""Lines named and priced by the shop's catalogue (docs/catalogue.md).

A real catalogue server runs on loopback (tests/support/catalog.py) and real service processes
ask it: what customers, guests, staff and services see on their lines and carts, and what
happens when the catalogue is slow, down, or answers something else than documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from cartsync.catalog import Breaker, HttpCatalog
from cartsync.domain.model import Actor, Line
from cartsync.domain.pricing import Totals, cart_totals
from cartsync.errors import CatalogUnavailable
from cartsync.settings import Settings, SettingsError
from tests.conftest import Tokens
from tests.support.catalog import Catalogue
from tests.support.processes import RedisProcess, ServiceProcess, service_env

STORE = "store-7"
FAST = {  # a short timeout and breaker, so failures are quick to provoke and to heal
    "CARTSYNC_CATALOG_TIMEOUT_SECONDS": "0.5",
    "CARTSYNC_CATALOG_CACHE_SECONDS": "60",
    "CARTSYNC_CATALOG_BREAKER_FAILURES": "3",
    "CARTSYNC_CATALOG_BREAKER_RESET_SECONDS": "1.0",
}


def fresh(prefix: str) -> str:
    """An SKU no other test has asked for, so the service's cache never answers for it."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def priced_service(
    redis_url: str, data_dir: Path, catalogue: Catalogue, **overrides: str
) -> Iterator[ServiceProcess]:
    env = service_env(redis_url, data_dir, CARTSYNC_CATALOG_URL=catalogue.url, **FAST)
    env.update(overrides)
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def catalogue() -> Iterator[Catalogue]:
    with Catalogue() as server:
        yield server


@pytest.fixture(scope="module")
def shop(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue
) -> Iterator[ServiceProcess]:
    """A service that prices from ``catalogue``, failure mode closed."""
    with priced_service(
        redis_server.url,
        tmp_path_factory.mktemp("shop"),
        catalogue,
        CARTSYNC_CATALOG_FAILURE="closed",
    ) as proc:
        yield proc


@contextlib.asynccontextmanager
async def as_(service: ServiceProcess, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as http:
        yield http


async def add(http: httpx.AsyncClient, body: dict[str, Any], prefix: str = "/v1") -> Any:
    r = await http.post(prefix + "/cart/lines", json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()["line"]


# Priced lines -----------------------------------------------------------------------------


async def test_a_customer_sees_the_catalogues_name_price_and_image_and_a_subtotal(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    tee, mug = fresh("TEE"), fresh("MUG")
    catalogue.add(tee, "Organic tee", "19.90", image="https://cdn.shop.example/tee.jpg")
    catalogue.add(mug, "Blue mug", "7.5")
    async with as_(shop, tokens.headers("customer", customer_id)) as me:
        line = await add(me, {"sku": tee, "qty": 2, "attrs": {"size": "M"}})
        assert line["title"] == "Organic tee"
        assert line["unit_price"] == "19.90"
        assert line["currency"] == "EUR"
        assert line["image"] == "https://cdn.shop.example/tee.jpg"
        assert line["priced"] is True
        assert line["priced_by"] == "catalog"
        await add(me, {"sku": mug})
        cart = (await me.get("/v1/cart")).json()
    assert [(ln["title"], ln["unit_price"]) for ln in cart["lines"]] == [
        ("Organic tee", "19.90"),
        ("Blue mug", "7.5"),
    ]
    assert cart["subtotal"] == "47.30"
    assert cart["item_count"] == 3


@pytest.mark.parametrize("role", ["customer", "guest"])
async def test_a_shoppers_own_title_and_price_are_ignored(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, role: str
) -> None:
    sku = fresh("BAG")
    catalogue.add(sku, "Leather bag", "129.00")
    async with as_(shop, tokens.headers(role, f"{role}-{uuid.uuid4().hex[:8]}")) as me:
        line = await add(me, {"sku": sku, "title": "Free bag", "unit_price": "0.01"})
        cart = (await me.get("/v1/cart")).json()
    assert (line["title"], line["unit_price"], line["priced_by"]) == (
        "Leather bag",
        "129.00",
        "catalog",
    )
    assert cart["subtotal"] == "129.00"


async def test_a_back_end_service_may_override_the_price_and_the_line_says_so(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    sku = fresh("COAT")
    catalogue.add(sku, "Rain coat", "89.00")
    async with as_(shop, tokens.headers("service", "checkout-svc")) as svc:
        line = await add(
            svc, {"sku": sku, "unit_price": "59.00"}, prefix=f"/v1/customers/{customer_id}"
        )
    assert (line["title"], line["unit_price"], line["priced_by"]) == (
        "Rain coat",
        "59.00",
        "service",
    )


async def test_staff_with_consent_may_override_name_and_price(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    sku = fresh("SHOE")
    catalogue.add(sku, "Trail shoe", "120.00")
    staff = tokens.headers("staff", "emp-1", store=STORE)
    async with as_(shop, tokens.headers("customer", customer_id)) as me:
        code = (await me.post("/v1/handoffs")).json()["code"]
        r = await me.post(f"/v1/handoffs/{code}/claim", headers=staff)
        assert r.status_code == 201, r.text
        grant = r.json()["grant"]["id"]
    async with as_(shop, staff) as clerk:
        line = await add(
            clerk,
            {"sku": sku, "title": "Trail shoe (display model)", "unit_price": "90.00"},
            prefix=f"/v1/grants/{grant}",
        )
    assert (line["title"], line["unit_price"], line["priced_by"]) == (
        "Trail shoe (display model)",
        "90.00",
        "staff",
    )


async def test_an_unknown_sku_is_refused_with_unknown_sku(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    async with as_(shop, tokens.headers("customer", customer_id)) as me:
        r = await me.post("/v1/cart/lines", json={"sku": fresh("GHOST")})
        cart = (await me.get("/v1/cart")).json()
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_sku"
    assert r.json()["error"]["field"] == "sku"
    assert cart["lines"] == []


async def test_a_websocket_op_is_priced_like_the_rest_call(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    sku, ghost = fresh("CAP"), fresh("GHOST")
    catalogue.add(sku, "Wool cap", "15.00")
    token = tokens.token("customer", customer_id)
    url = "ws" + shop.url.removeprefix("http") + "/v1/ws"
    async with connect(
        url, subprotocols=["cartsync.v1", f"bearer.{token}"], proxy=None, open_timeout=5
    ) as ws:  # type: ignore[list-item]
        answers: dict[str, Any] = {}
        body = {"sku": sku, "unit_price": "1.00"}
        await ws.send(json.dumps({"type": "op", "id": "op-1", "name": "add_line", "body": body}))
        await ws.send(
            json.dumps({"type": "op", "id": "op-2", "name": "add_line", "body": {"sku": ghost}})
        )
        for _ in range(20):  # hello, events, a ping now and then: bounded
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["type"] in ("ack", "nack"):
                answers[frame["id"]] = frame
            if len(answers) == 2:
                break
    line = json.loads(json.dumps(answers["op-1"]["result"]))["line"]
    assert (line["title"], line["unit_price"], line["priced_by"]) == (
        "Wool cap",
        "15.00",
        "catalog",
    )
    assert answers["op-2"]["error"]["code"] == "unknown_sku"


async def test_moving_a_wishlist_item_to_the_cart_prices_it(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    sku = fresh("LAMP")
    catalogue.add(sku, "Desk lamp", "34.50", currency="EUR")
    async with as_(shop, tokens.headers("customer", customer_id)) as me:
        r = await me.post("/v1/wishlists/default/items", json={"sku": sku, "title": "my lamp"})
        assert r.status_code == 201, r.text
        item = r.json()["item"]["id"]
        r = await me.post(f"/v1/wishlists/default/items/{item}/move-to-cart", json={"qty": 2})
        assert r.status_code == 200, r.text
        cart = (await me.get("/v1/cart")).json()
    line = r.json()["line"]
    assert (line["title"], line["unit_price"], line["priced_by"]) == (
        "Desk lamp",
        "34.50",
        "catalog",
    )
    assert (cart["subtotal"], cart["item_count"]) == ("69.00", 2)


# Subtotal ---------------------------------------------------------------------------------


async def test_no_subtotal_when_a_line_is_priced_in_another_currency(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens, customer_id: str
) -> None:
    eur, usd = fresh("EU"), fresh("US")
    catalogue.add(eur, "Scarf", "20.00")
    catalogue.add(usd, "Import scarf", "25.00", currency="USD")
    async with as_(shop, tokens.headers("customer", customer_id)) as me:
        await add(me, {"sku": eur})
        assert (await me.get("/v1/cart")).json()["subtotal"] == "20.00"
        line = await add(me, {"sku": usd})
        cart = (await me.get("/v1/cart")).json()
    assert line["currency"] == "USD"
    assert (cart["subtotal"], cart["item_count"]) == (None, None)


def test_cart_totals_need_every_line_priced_in_the_carts_currency() -> None:
    by = Actor(role="customer", id="c")

    def line(price: str | None, qty: int = 1, currency: str | None = None) -> Line:
        return Line("L1", "S", qty, {}, "t", "t", by, unit_price=price, currency=currency)

    assert cart_totals([], "EUR") == Totals("0.00", 0)
    assert cart_totals([line("1.10", 3), line("0.05", 2, "EUR")], "EUR") == Totals("3.40", 5)
    assert cart_totals([line("19.90", 2)], "EUR") == Totals("39.80", 2)
    assert cart_totals([line("1.10"), line(None)], "EUR") is None
    assert cart_totals([line("1.10"), line("2.00", 1, "USD")], "EUR") is None


def test_lines_stored_before_pricing_decode_and_count_in_the_carts_currency() -> None:
    old = (
        b'{"id":"L1","sku":"TEE-1","qty":2,"attrs":{},"added_at":"t","updated_at":"t",'
        b'"updated_by":{"role":"customer","id":"c"},"title":"Tee","unit_price":"9.90"}'
    )
    line = msgspec.json.decode(old, type=Line)
    assert (line.currency, line.priced, line.priced_by, line.image) == (None, None, None, None)
    assert cart_totals([line], "EUR") == Totals("19.80", 2)
    assert b"priced" not in msgspec.json.encode(line)  # an old line is sent as it was stored


# Cache and batches ------------------------------------------------------------------------


async def test_the_cache_asks_the_catalogue_once_per_sku(
    shop: ServiceProcess, catalogue: Catalogue, tokens: Tokens
) -> None:
    sku = fresh("SOCK")
    catalogue.add(sku, "Socks", "4.00")
    for n in range(3):
        async with as_(shop, tokens.headers("customer", f"cust-{uuid.uuid4().hex[:8]}")) as me:
            await add(me, {"sku": sku, "qty": n + 1})
    assert catalogue.requests_for(sku) == 1


async def test_several_skus_are_asked_in_one_request(catalogue: Catalogue) -> None:
    skus = [fresh("B") for _ in range(3)]
    for n, sku in enumerate(skus):
        catalogue.add(sku, f"Product {n}", f"{n}.00")
    many = [fresh("M") for _ in range(120)]  # unknown ones, more than one batch holds
    async with httpx.AsyncClient() as http:
        adapter = HttpCatalog(
            http, catalogue.url, timeout_s=2, cache_ttl_s=60, breaker=Breaker(3, 1.0)
        )
        before = len(catalogue.asked)
        found = await adapter.products([*skus, skus[0]])
        assert len(catalogue.asked) == before + 1
        assert sorted(catalogue.asked[-1]) == sorted(skus)
        assert {s: p.title for s, p in found.items()} == {
            skus[0]: "Product 0",
            skus[1]: "Product 1",
            skus[2]: "Product 2",
        }
        assert await adapter.products(many) == {}
        assert [len(asked) for asked in catalogue.asked[before + 1 :]] == [50, 50, 20]
        await adapter.products([*skus, *many])  # all cached, known and unknown
        assert len(catalogue.asked) == before + 4


async def test_a_guests_unpriced_lines_are_priced_at_sign_in_in_one_request(
    redis_server: RedisProcess,
    tmp_path: Path,
    own_catalogue: Catalogue,
    tokens: Tokens,
    customer_id: str,
) -> None:
    skus = [fresh("KIT") for _ in range(3)]
    for n, sku in enumerate(skus):
        own_catalogue.add(sku, f"Kit {n}", f"1{n}.00")
    patient = {"CARTSYNC_CATALOG_FAILURE": "open", "CARTSYNC_CATALOG_BREAKER_FAILURES": "100"}
    with priced_service(redis_server.url, tmp_path, own_catalogue, **patient) as proc:
        guest = tokens.token("guest", f"g-{uuid.uuid4().hex[:8]}")
        own_catalogue.stop()
        async with as_(proc, {"Authorization": f"Bearer {guest}"}) as visitor:
            for sku in skus:
                assert (await add(visitor, {"sku": sku}))["priced"] is False
        own_catalogue.start()
        before = len(own_catalogue.asked)
        async with as_(proc, tokens.headers("customer", customer_id)) as me:
            preview = await me.post("/v1/cart/merge", json={"guest_token": guest, "dry_run": True})
            r = await me.post("/v1/cart/merge", json={"guest_token": guest})
            assert r.status_code == 200, r.text
            cart = (await me.get("/v1/cart")).json()
    assert preview.json()["cart"]["subtotal"] == "33.00"
    assert [(ln["title"], ln["unit_price"], ln["priced_by"]) for ln in cart["lines"]] == [
        ("Kit 0", "10.00", "catalog"),
        ("Kit 1", "11.00", "catalog"),
        ("Kit 2", "12.00", "catalog"),
    ]
    assert (cart["subtotal"], cart["item_count"]) == ("33.00", 3)
    assert [sorted(asked) for asked in own_catalogue.asked[before:]] == [sorted(skus)]


# When the catalogue fails -----------------------------------------------------------------


@pytest.fixture
def own_catalogue() -> Iterator[Catalogue]:
    with Catalogue() as server:
        yield server


FAILURES = ["down", "slow", "error", "wrong-shape", "not-json", "bad-price"]


def break_it(catalogue: Catalogue, how: str) -> None:
    if how == "down":
        catalogue.stop()
    else:
        catalogue.behaviour = how  # type: ignore[assignment]


@pytest.mark.parametrize("how", FAILURES)
async def test_failure_mode_closed_refuses_the_line_with_503(
    redis_server: RedisProcess,
    tmp_path: Path,
    own_catalogue: Catalogue,
    tokens: Tokens,
    customer_id: str,
    how: str,
) -> None:
    sku = fresh("PEN")
    own_catalogue.add(sku, "Pen", "2.00")
    with priced_service(
        redis_server.url, tmp_path, own_catalogue, CARTSYNC_CATALOG_FAILURE="closed"
    ) as proc:
        break_it(own_catalogue, how)
        async with as_(proc, tokens.headers("customer", customer_id)) as me:
            r = await me.post("/v1/cart/lines", json={"sku": sku})
            cart = (await me.get("/v1/cart")).json()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "catalog_unavailable"
    assert "catalogue" in r.json()["error"]["message"]
    assert cart["lines"] == []


@pytest.mark.parametrize("how", FAILURES)
async def test_failure_mode_open_takes_the_line_unpriced(
    redis_server: RedisProcess,
    tmp_path: Path,
    own_catalogue: Catalogue,
    tokens: Tokens,
    customer_id: str,
    how: str,
) -> None:
    priced, later = fresh("INK"), fresh("PAD")
    own_catalogue.add(priced, "Ink", "3.00")
    own_catalogue.add(later, "Pad", "1.00")
    with priced_service(
        redis_server.url, tmp_path, own_catalogue, CARTSYNC_CATALOG_FAILURE="open"
    ) as proc:
        async with as_(proc, tokens.headers("customer", customer_id)) as me:
            await add(me, {"sku": priced})
            break_it(own_catalogue, how)
            line = await add(me, {"sku": later, "title": "Pad", "unit_price": "0.10"})
            again = await add(me, {"sku": priced})  # the earlier price stays
            cart = (await me.get("/v1/cart")).json()
    assert line["priced"] is False
    assert not {"title", "unit_price", "currency", "priced_by"} & set(line)
    assert (again["qty"], again["unit_price"], again["priced"]) == (2, "3.00", True)
    assert (cart["subtotal"], cart["item_count"]) == (None, None)


async def test_the_breaker_stops_asking_a_failing_catalogue_and_closes_when_it_heals(
    redis_server: RedisProcess,
    tmp_path: Path,
    own_catalogue: Catalogue,
    tokens: Tokens,
    customer_id: str,
) -> None:
    skus = [fresh("CUP") for _ in range(6)]
    for sku in skus:
        own_catalogue.add(sku, "Cup", "5.00")
    own_catalogue.behaviour = "error"
    with priced_service(
        redis_server.url, tmp_path, own_catalogue, CARTSYNC_CATALOG_FAILURE="closed"
    ) as proc:
        async with as_(proc, tokens.headers("customer", customer_id)) as me:
            statuses = [
                (await me.post("/v1/cart/lines", json={"sku": s})).status_code for s in skus[:5]
            ]
            assert statuses == [503] * 5
            assert len(own_catalogue.asked) == 3  # open after 3 failures: the rest never left
            own_catalogue.behaviour = "ok"
            healed = None
            for _ in range(40):  # the breaker half-opens after 1 s; poll for up to 4 s
                await asyncio.sleep(0.1)
                r = await me.post("/v1/cart/lines", json={"sku": skus[5]})
                if r.status_code != 503:
                    healed = r
                    break
            assert healed is not None, "the breaker never closed"
            assert healed.status_code == 201, healed.text
            assert healed.json()["line"]["priced_by"] == "catalog"
            r = await me.post("/v1/cart/lines", json={"sku": skus[0]})
    assert r.status_code == 201


def test_the_breaker_half_opens_one_trial_at_a_time() -> None:
    now = [0.0]
    breaker = Breaker(2, 10.0, clock=lambda: now[0])
    assert breaker.allow()
    assert breaker.state == "closed"
    breaker.failed()
    assert breaker.state == "closed"
    breaker.failed()
    assert breaker.state == "open"
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half-open"
    assert breaker.allow()
    assert not breaker.allow()  # one trial at a time
    breaker.abandoned()  # that trial was cancelled: the next call may try
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed"
    assert breaker.allow()


async def test_an_unreachable_catalogue_raises_catalog_unavailable_in_the_adapter() -> None:
    with Catalogue() as server:
        url = server.url
    async with httpx.AsyncClient() as http:
        adapter = HttpCatalog(http, url, timeout_s=0.5, cache_ttl_s=60, breaker=Breaker(3, 1.0))
        with pytest.raises(CatalogUnavailable):
            await adapter.products(["A"])


# Without a catalogue and settings -------------------------------------------------------


async def test_without_a_catalogue_lines_keep_client_prices_marked_as_client(
    alice: httpx.AsyncClient,
) -> None:
    line = await add(alice, {"sku": fresh("TEE"), "qty": 2, "title": "Tee", "unit_price": "9.90"})
    bare = await add(alice, {"sku": fresh("MUG")})
    assert (line["title"], line["unit_price"], line["currency"], line["priced_by"]) == (
        "Tee",
        "9.90",
        "EUR",
        "client",
    )
    assert line["priced"] is True
    assert bare["priced"] is False
    cart = (await alice.get("/v1/cart")).json()
    assert (cart["subtotal"], cart["item_count"]) == (None, None)


def test_the_catalogue_settings_are_checked_at_start() -> None:
    base = {"CARTSYNC_JWT_SECRETS": "x" * 32}
    settings = Settings.from_env({**base, "CARTSYNC_CATALOG_URL": "https://shop.example/p"})
    assert (settings.catalog_url, settings.catalog_failure) == ("https://shop.example/p", "open")
    for bad in (
        {"CARTSYNC_CATALOG_FAILURE": "maybe"},
        {"CARTSYNC_CATALOG_URL": "ftp://shop.example/p"},
        {"CARTSYNC_CATALOG_TIMEOUT_SECONDS": "0"},
        {"CARTSYNC_CATALOG_BREAKER_FAILURES": "-1"},
    ):
        with pytest.raises(SettingsError, match="CARTSYNC_CATALOG"):
            Settings.from_env({**base, **bad})
