"""Guest-to-customer merge at sign-in: each strategy, retries, races, limits and bad input."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

Headers = dict[str, str]
LineId = tuple[str, tuple[tuple[str, str], ...]]


def line_id(sku: str, attrs: dict[str, str] | None = None) -> LineId:
    return sku, tuple(sorted((attrs or {}).items()))


def quantities(cart: dict[str, Any]) -> dict[LineId, int]:
    """The cart's lines as {(sku, attrs): qty}, checked to hold no duplicate line."""
    seen = [line_id(line["sku"], line["attrs"]) for line in cart["lines"]]
    assert len(seen) == len(set(seen)), f"duplicate lines: {seen}"
    return {line_id(line["sku"], line["attrs"]): line["qty"] for line in cart["lines"]}


def wishlist_skus(wishlists: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{wishlist name: sorted skus}, checked to hold no duplicate list or item."""
    names = [w["name"].casefold() for w in wishlists]
    assert len(names) == len(set(names)), f"duplicate wishlists: {names}"
    out: dict[str, list[str]] = {}
    for w in wishlists:
        skus = [item["sku"] for item in w["items"]]
        assert len(skus) == len(set(skus)), f"duplicate items on {w['name']}: {skus}"
        out[w["name"]] = sorted(skus)
    return out


async def add_line(
    client: httpx.AsyncClient,
    headers: Headers,
    sku: str,
    qty: int = 1,
    attrs: dict[str, str] | None = None,
) -> None:
    body: dict[str, Any] = {"sku": sku, "qty": qty}
    if attrs is not None:
        body["attrs"] = attrs
    r = await client.post("/v1/cart/lines", json=body, headers=headers)
    assert r.status_code in (200, 201), r.text


async def create_wishlist(client: httpx.AsyncClient, headers: Headers, name: str) -> str:
    r = await client.post("/v1/wishlists", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["wishlist"]["id"])


async def add_item(client: httpx.AsyncClient, headers: Headers, wishlist_id: str, sku: str) -> None:
    r = await client.post(f"/v1/wishlists/{wishlist_id}/items", json={"sku": sku}, headers=headers)
    assert r.status_code == 201, r.text


async def get_cart(client: httpx.AsyncClient, headers: Headers) -> dict[str, Any]:
    r = await client.get("/v1/cart", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def merge(
    client: httpx.AsyncClient, headers: Headers, guest_token: str, strategy: str = "sum"
) -> httpx.Response:
    body = {"guest_token": guest_token, "strategy": strategy}
    return await client.post("/v1/cart/merge", json=body, headers=headers)


async def event_types(client: httpx.AsyncClient, headers: Headers) -> list[str]:
    r = await client.get("/v1/cart/history", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    return [e["type"] for e in r.json()["events"]]


async def issued_guest(client: httpx.AsyncClient) -> tuple[str, str]:
    """A guest token from the service's own route, as a browser gets one."""
    r = await client.post("/v1/guest")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"token", "guest_id", "expires_at"}
    return body["token"], body["guest_id"]


def minted_guest(tokens: Tokens) -> tuple[str, str]:
    guest_id = f"g_{uuid.uuid4().hex}"
    return tokens.token("guest", guest_id), guest_id


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


async def assert_guest_closed(
    client: httpx.AsyncClient, redis_server: RedisProcess, guest_token: str, guest_id: str
) -> None:
    """After a merge the guest holds nothing and can no longer change anything."""
    guest = bearer(guest_token)
    cart = await get_cart(client, guest)
    assert cart["rev"] == 0
    assert cart["lines"] == []
    r = await client.get("/v1/wishlists", headers=guest)
    assert r.status_code == 200
    assert all(w["items"] == [] for w in r.json()["wishlists"])
    r = await client.post("/v1/cart/lines", json={"sku": "LATE-1"}, headers=guest)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "guest_merged"
    r = await client.post("/v1/wishlists/default/items", json={"sku": "LATE-2"}, headers=guest)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "guest_merged"
    leftover = {
        k.decode() for k in redis_server.client().scan_iter(match=f"*{{g:{guest_id}}}*", count=1000)
    }
    # Only the merge tombstone may remain: it is what turns later guest writes into 409.
    assert leftover <= {f"cs:{{g:{guest_id}}}:merge"}, leftover


RED_M = {"colour": "red", "size": "M"}
RED_M_REORDERED = {"size": "M", "colour": "red"}

CUSTOMER_LINES: list[tuple[str, int, dict[str, str]]] = [
    ("A-1", 2, RED_M),
    ("B-1", 1, {"size": "M"}),
    ("D-1", 5, {}),
]
GUEST_LINES: list[tuple[str, int, dict[str, str]]] = [
    ("A-1", 3, RED_M_REORDERED),  # same line as the customer's: attrs order does not matter
    ("B-1", 4, {"size": "L"}),  # same sku, other attrs: a distinct line
    ("C-1", 1, {}),
    ("D-1", 2, {}),
]
A, BM, BL, C, D = (
    line_id("A-1", RED_M),
    line_id("B-1", {"size": "M"}),
    line_id("B-1", {"size": "L"}),
    line_id("C-1"),
    line_id("D-1"),
)
EXPECTED_LINES = {
    "sum": {A: 5, BM: 1, D: 7, BL: 4, C: 1},
    "max": {A: 3, BM: 1, D: 5, BL: 4, C: 1},
    "replace": {A: 3, BL: 4, C: 1, D: 2},
    "keep": {A: 2, BM: 1, D: 5},
}


@pytest.mark.parametrize("strategy", ["sum", "max", "replace", "keep"])
async def test_each_strategy_merges_lines_and_folds_wishlists(
    client: httpx.AsyncClient,
    tokens: Tokens,
    redis_server: RedisProcess,
    customer_id: str,
    strategy: str,
) -> None:
    customer = tokens.headers("customer", customer_id)
    for sku, qty, attrs in CUSTOMER_LINES:
        await add_line(client, customer, sku, qty, attrs)
    await add_item(client, customer, "default", "W-1")
    await add_item(client, customer, "default", "W-2")
    birthday = await create_wishlist(client, customer, "Birthday")
    await add_item(client, customer, birthday, "W-3")

    guest_token, guest_id = await issued_guest(client)
    guest = bearer(guest_token)
    for sku, qty, attrs in GUEST_LINES:
        await add_line(client, guest, sku, qty, attrs)
    await add_item(client, guest, "default", "W-2")  # already on the customer's default list
    await add_item(client, guest, "default", "W-4")
    guest_birthday = await create_wishlist(client, guest, "birthday")  # same name, other case
    await add_item(client, guest, guest_birthday, "W-3")
    await add_item(client, guest, guest_birthday, "W-5")
    garden = await create_wishlist(client, guest, "Garden")
    await add_item(client, guest, garden, "W-6")

    rev_before = (await get_cart(client, customer))["rev"]
    events_before = await event_types(client, customer)

    r = await merge(client, customer, guest_token, strategy)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"rev", "cart", "wishlists"} <= set(body)
    assert body["already_merged"] is False
    assert body["rev"] == rev_before + 1
    assert body["cart"]["rev"] == body["rev"]
    assert r.headers["ETag"] == f'"{body["rev"]}"'
    assert (body["dropped_lines"], body["capped_lines"], body["dropped_items"]) == (0, 0, 0)
    assert quantities(body["cart"]) == EXPECTED_LINES[strategy]

    expected_wishlists = {
        "default": ["W-1", "W-2", "W-4"],
        "Birthday": ["W-3", "W-5"],
        "Garden": ["W-6"],
    }
    assert wishlist_skus(body["wishlists"]) == expected_wishlists

    # What the response said is what a later read sees.
    cart = await get_cart(client, customer)
    assert cart["rev"] == body["rev"]
    assert quantities(cart) == EXPECTED_LINES[strategy]
    r = await client.get("/v1/wishlists", headers=customer)
    assert wishlist_skus(r.json()["wishlists"]) == expected_wishlists

    events = await event_types(client, customer)
    assert events[: len(events_before)] == events_before
    assert events[len(events_before) :] == ["cart.merged"]
    r = await client.get("/v1/cart/history", params={"since": rev_before}, headers=customer)
    (merged,) = r.json()["events"]
    assert merged["data"]["strategy"] == strategy
    assert merged["data"]["guest"] == f"g:{guest_id}"
    assert merged["actor"]["id"] == customer_id

    await assert_guest_closed(client, redis_server, guest_token, guest_id)


async def test_replace_with_an_empty_guest_cart_keeps_the_customer_lines(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    await add_line(client, customer, "KEEP-ME", 2)
    guest_token, _ = minted_guest(tokens)
    await add_item(client, bearer(guest_token), "default", "W-9")  # guest data, but no lines

    r = await merge(client, customer, guest_token, "replace")
    assert r.status_code == 200, r.text
    assert quantities(r.json()["cart"]) == {line_id("KEEP-ME"): 2}
    assert wishlist_skus(r.json()["wishlists"]) == {"default": ["W-9"]}


async def test_keep_with_an_empty_customer_cart_takes_the_guest_lines(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "FROM-GUEST", 3)

    r = await merge(client, customer, guest_token, "keep")
    assert r.status_code == 200, r.text
    assert quantities(r.json()["cart"]) == {line_id("FROM-GUEST"): 3}


async def test_merging_a_guest_with_nothing_changes_nothing(
    client: httpx.AsyncClient, tokens: Tokens, redis_server: RedisProcess, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    await add_line(client, customer, "MINE-1")
    guest_token, guest_id = minted_guest(tokens)

    r = await merge(client, customer, guest_token)
    assert r.status_code == 200, r.text
    assert r.json()["rev"] == 1
    assert quantities(r.json()["cart"]) == {line_id("MINE-1"): 1}
    assert await event_types(client, customer) == ["line.added"]
    await assert_guest_closed(client, redis_server, guest_token, guest_id)


async def test_a_retried_merge_reports_already_merged_and_changes_nothing(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    await add_line(client, customer, "A-1", 1)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "A-1", 2)
    await add_line(client, bearer(guest_token), "G-1", 1)

    first = await merge(client, customer, guest_token)
    assert first.status_code == 200, first.text
    assert first.json()["already_merged"] is False
    expected = {line_id("A-1"): 3, line_id("G-1"): 1}
    assert quantities(first.json()["cart"]) == expected

    for strategy in ("sum", "replace"):  # a retry cannot re-apply, whatever it asks for
        again = await merge(client, customer, guest_token, strategy)
        assert again.status_code == 200, again.text
        assert again.json()["already_merged"] is True
        assert again.json()["rev"] == first.json()["rev"]
        assert quantities(again.json()["cart"]) == expected

    cart = await get_cart(client, customer)
    assert cart["rev"] == first.json()["rev"]
    assert quantities(cart) == expected
    assert (await event_types(client, customer)).count("cart.merged") == 1


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_merges_of_one_guest_count_its_lines_once(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, round_: int
) -> None:
    """The 'emptied 65-item cart' bug: racing merges must neither lose nor double anything."""
    customer = tokens.headers("customer", customer_id)
    for i in range(65):
        await add_line(client, customer, f"L-{i}", 1)
    guest_token, _ = minted_guest(tokens)
    guest = bearer(guest_token)
    await add_line(client, guest, "L-0", 2)
    await add_line(client, guest, "G-1", 1)
    await add_line(client, guest, "G-2", 3)
    await add_item(client, guest, "default", "W-1")

    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as other:
        clients = [client, other] * 3
        results = await asyncio.gather(*(merge(c, customer, guest_token) for c in clients[:5]))
    assert [r.status_code for r in results] == [200] * 5, [r.text for r in results]

    expected = {line_id(f"L-{i}"): 1 for i in range(1, 65)}
    expected |= {line_id("L-0"): 3, line_id("G-1"): 1, line_id("G-2"): 3}
    cart = await get_cart(client, customer)
    assert quantities(cart) == expected
    assert cart["rev"] == 66
    for r in results:
        assert quantities(r.json()["cart"]) == expected
        assert r.json()["rev"] == 66
    r = await client.get("/v1/wishlists", headers=customer)
    assert wishlist_skus(r.json()["wishlists"]) == {"default": ["W-1"]}
    assert (await event_types(client, customer)).count("cart.merged") == 1


async def test_merge_while_another_device_keeps_adding_loses_nothing(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    phone = {**customer, "X-Device-Id": "phone"}
    await add_line(client, customer, "A-1", 1)
    await add_line(client, customer, "MINE-1", 1)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "A-1", 10)
    await add_line(client, bearer(guest_token), "G-1", 1)
    adds = 30
    started = asyncio.Event()

    async def device(http: httpx.AsyncClient) -> None:
        for i in range(adds):
            await add_line(http, phone, "A-1", 1)  # the line the guest also has
            await add_line(http, phone, f"DEV-{i}", 1)
            if i == 2:
                started.set()

    async def sign_in() -> list[httpx.Response]:
        await asyncio.wait_for(started.wait(), 30)
        tries: list[httpx.Response] = []
        for _ in range(10):  # a cart that keeps changing may answer 409 cart_busy: retry
            r = await merge(client, customer, guest_token)
            tries.append(r)
            if r.status_code != 409:
                break
        return tries

    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as other:
        _, tries = await asyncio.gather(device(other), sign_in())
    for r in tries[:-1]:
        assert r.json()["error"]["code"] == "cart_busy", r.text
    assert tries[-1].status_code == 200, tries[-1].text

    expected = {line_id("A-1"): 1 + adds + 10, line_id("MINE-1"): 1, line_id("G-1"): 1}
    expected |= {line_id(f"DEV-{i}"): 1 for i in range(adds)}
    cart = await get_cart(client, customer)
    assert quantities(cart) == expected
    assert cart["rev"] == 2 + 2 * adds + 1
    assert (await event_types(client, customer)).count("cart.merged") == 1


async def test_a_guest_merges_into_one_customer_only(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    first = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    second = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    await add_line(client, first, "FIRST-1")
    await add_line(client, second, "SECOND-1")
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "G-1", 2)

    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as other:
        a, b = await asyncio.gather(
            merge(client, first, guest_token), merge(other, second, guest_token)
        )
    assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
    winner, loser = (first, second) if a.status_code == 200 else (second, first)
    refused = b if a.status_code == 200 else a
    assert refused.json()["error"]["code"] == "guest_merged_elsewhere"
    assert refused.json()["error"]["field"] == "guest_token"

    winner_cart = await get_cart(client, winner)
    assert quantities(winner_cart)[line_id("G-1")] == 2
    loser_cart = await get_cart(client, loser)
    assert loser_cart["rev"] == 1
    assert line_id("G-1") not in quantities(loser_cart)

    # Later tries by the other customer are refused the same way, and change nothing.
    r = await merge(client, loser, guest_token)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "guest_merged_elsewhere"
    assert (await get_cart(client, loser))["rev"] == 1
    r = await merge(client, winner, guest_token)
    assert r.status_code == 200, r.text
    assert r.json()["already_merged"] is True


async def test_sum_past_the_quantity_ceiling_caps_and_reports(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    await add_line(client, customer, "BULK-1", 600)
    await add_line(client, customer, "BULK-2", 400)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "BULK-1", 500)
    await add_line(client, bearer(guest_token), "BULK-2", 599)

    r = await merge(client, customer, guest_token, "sum")
    assert r.status_code == 200, r.text
    body = r.json()
    assert quantities(body["cart"]) == {line_id("BULK-1"): 999, line_id("BULK-2"): 999}
    assert body["capped_lines"] == 1
    assert body["dropped_lines"] == 0


async def test_limits_of_a_small_deployment_drop_and_report(
    redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    env = service_env(
        redis_server.url,
        tmp_path,
        CARTSYNC_MAX_LINES="3",
        CARTSYNC_MAX_QTY="10",
        CARTSYNC_MAX_WISHLIST_ITEMS="2",
    )
    small = ServiceProcess(env).start()
    try:
        async with httpx.AsyncClient(base_url=small.url, timeout=30) as http:
            customer = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
            await add_line(http, customer, "P-1", 6)
            await add_line(http, customer, "P-2", 1)
            await add_line(http, customer, "P-3", 1)  # the cart is full
            await add_item(http, customer, "default", "I-1")
            await add_item(http, customer, "default", "I-2")  # the list is full
            guest_token, _ = minted_guest(tokens)
            guest = bearer(guest_token)
            await add_line(http, guest, "P-1", 7)  # 6 + 7 is over the max of 10
            for sku in ("G-1", "G-2"):
                await add_line(http, guest, sku, 1)
            for sku in ("I-2", "I-3"):
                await add_item(http, guest, "default", sku)

            r = await merge(http, customer, guest_token, "sum")
            assert r.status_code == 200, r.text
            body = r.json()
            assert quantities(body["cart"]) == {
                line_id("P-1"): 10,
                line_id("P-2"): 1,
                line_id("P-3"): 1,
            }
            assert body["capped_lines"] == 1
            assert body["dropped_lines"] == 2
            assert wishlist_skus(body["wishlists"]) == {"default": ["I-1", "I-2"]}
            assert body["dropped_items"] == 1
            assert quantities(await get_cart(http, customer)) == quantities(body["cart"])
    finally:
        small.stop()


def foreign_guest_token() -> str:
    now = int(time.time())
    claims = {
        "sub": "g_foreign",
        "role": "guest",
        "aud": "cartsync",
        "iss": "cartsync",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, "not-our-secret-" + "z" * 32, algorithm="HS256", headers={"kid": "x"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_field"),
        ({"guest_token": ""}, "invalid_field"),
        ({"guest_token": 42}, "invalid_field"),
        ({"guest_token": "garbage"}, "invalid_guest_token"),
        ({"guest_token": "a.b.c"}, "invalid_guest_token"),
        ({"guest_token": "<customer>"}, "invalid_guest_token"),
        ({"guest_token": "<staff>"}, "invalid_guest_token"),
        ({"guest_token": "<foreign>"}, "invalid_guest_token"),
    ],
)
async def test_a_bad_guest_token_is_refused(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str, body: dict[str, Any], code: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    await add_line(client, customer, "MINE-1")
    stand_ins = {
        "<customer>": tokens.token("customer", f"cust-{uuid.uuid4().hex[:12]}"),
        "<staff>": tokens.token("staff", "sam", store="berlin-1"),
        "<foreign>": foreign_guest_token(),
    }
    if body.get("guest_token") in stand_ins:
        body = {"guest_token": stand_ins[body["guest_token"]]}

    r = await client.post("/v1/cart/merge", json=body, headers=customer)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["field"] == "guest_token"
    assert (await get_cart(client, customer))["rev"] == 1


async def test_an_unknown_strategy_is_refused_and_leaves_the_guest_usable(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "G-1")

    r = await merge(client, customer, guest_token, "average")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_field"
    assert r.json()["error"]["field"] == "strategy"
    assert (await get_cart(client, customer))["rev"] == 0
    await add_line(client, bearer(guest_token), "G-2")  # the guest was not frozen


async def test_only_a_customer_can_take_in_a_guest(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    guest_token, _ = minted_guest(tokens)
    other_guest, _ = minted_guest(tokens)
    await add_line(client, bearer(other_guest), "G-1")

    r = await merge(client, bearer(guest_token), other_guest)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"

    staff = tokens.headers("staff", "sam", store="berlin-1")
    r = await merge(client, staff, other_guest)
    assert r.status_code == 403, r.text

    r = await merge(client, {}, other_guest)
    assert r.status_code == 401, r.text
    await add_line(client, bearer(other_guest), "G-2")  # none of this touched the guest


# Preview (dry_run) -----------------------------------------------------------------------------


async def test_a_dry_run_answers_the_plan_and_changes_nothing(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    for sku, qty, attrs in CUSTOMER_LINES:
        await add_line(client, customer, sku, qty, attrs)
    guest_token, _ = minted_guest(tokens)
    guest = bearer(guest_token)
    for sku, qty, attrs in GUEST_LINES:
        await add_line(client, guest, sku, qty, attrs)
    await add_item(client, guest, "default", "W-1")
    before = await get_cart(client, customer)
    guest_before = await get_cart(client, guest)

    body = {"guest_token": guest_token, "strategy": "max", "dry_run": True}
    preview = await client.post("/v1/cart/merge", json=body, headers=customer)
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["dry_run"] is True
    assert plan["already_merged"] is False
    assert plan["rev"] == before["rev"]  # the revision the plan was computed at
    assert preview.headers["etag"] == f'"{before["rev"]}"'
    assert quantities(plan["cart"]) == EXPECTED_LINES["max"]
    assert wishlist_skus(plan["wishlists"])["default"] == ["W-1"]

    # Nothing moved: both carts, both revisions, no event, and the guest is still open.
    assert await get_cart(client, customer) == before
    assert await get_cart(client, guest) == guest_before
    assert "cart.merged" not in await event_types(client, customer)
    await add_line(client, guest, "LATE-1")

    done = await merge(client, customer, guest_token, "max")
    assert done.status_code == 200, done.text
    assert done.json()["dry_run"] is False
    assert quantities(done.json()["cart"]) == {**EXPECTED_LINES["max"], line_id("LATE-1"): 1}


async def test_a_dry_run_after_the_merge_says_already_merged(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    customer = tokens.headers("customer", customer_id)
    guest_token, _ = minted_guest(tokens)
    await add_line(client, bearer(guest_token), "G-1", 2)
    done = await merge(client, customer, guest_token)
    assert done.status_code == 200, done.text

    body = {"guest_token": guest_token, "dry_run": True}
    again = await client.post("/v1/cart/merge", json=body, headers=customer)
    assert again.status_code == 200, again.text
    assert again.json()["already_merged"] is True
    assert again.json()["rev"] == done.json()["rev"]
    assert quantities(again.json()["cart"]) == {line_id("G-1"): 2}

    elsewhere = tokens.headers("customer", f"{customer_id}-other")
    r = await client.post("/v1/cart/merge", json=body, headers=elsewhere)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "guest_merged_elsewhere"
