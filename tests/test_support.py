"""Customer service: support reads any customer's data with a reason (and the customer's export
lists each read), restores a cart to an earlier revision as one logged change, and nothing
else; the log keeps a time window and reaches back as far as its snapshots."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

REASON = {"X-Support-Reason": "ticket 4711: customer asks where her cart went"}


def state(cart: dict[str, Any], wishlists: dict[str, Any]) -> dict[str, Any]:
    """What a customer sees: lines, note, and wishlists with their items."""
    return {
        "lines": [(x["id"], x["sku"], x["qty"], x["attrs"]) for x in cart["lines"]],
        "note": cart["note"],
        "wishlists": [
            (w["id"], w["name"], [(i["id"], i["sku"]) for i in w["items"]])
            for w in wishlists["wishlists"]
            if w["items"] or w.get("created_at")
        ],
    }


async def seen(c: httpx.AsyncClient, base: str = "/v1", **kw: Any) -> dict[str, Any]:
    cart = (await c.get(f"{base}/cart", **kw)).json()
    lists = (await c.get(f"{base}/wishlists", **kw)).json()
    return state(cart, lists)


@pytest.fixture
async def agent(service: ServiceProcess, tokens: Tokens) -> AsyncIterator[httpx.AsyncClient]:
    """Support agent Emma, reading as customer service does: with a reason."""
    headers = {**tokens.headers("support", "emma"), **REASON}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as c:
        yield c


async def story(alice: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Alice's cart over 8 changes; the state after revision k at index k."""
    states = [await seen(alice)]
    socks = (await alice.post("/v1/cart/lines", json={"sku": "SOCKS", "qty": 2})).json()
    states.append(await seen(alice))
    await alice.post("/v1/cart/lines", json={"sku": "HAT", "attrs": {"size": "L"}})
    states.append(await seen(alice))
    await alice.patch(f"/v1/cart/lines/{socks['line']['id']}", json={"qty": 3})
    states.append(await seen(alice))
    await alice.put("/v1/cart/note", json={"note": "gift"})
    states.append(await seen(alice))
    wl = (await alice.post("/v1/wishlists", json={"name": "Birthday"})).json()
    states.append(await seen(alice))
    await alice.post(f"/v1/wishlists/{wl['wishlist']['id']}/items", json={"sku": "MUG"})
    states.append(await seen(alice))
    await alice.post(f"/v1/cart/lines/{socks['line']['id']}/save-for-later")
    states.append(await seen(alice))
    await alice.delete("/v1/cart")
    states.append(await seen(alice))
    assert (await alice.get("/v1/cart")).json()["rev"] == 8
    return states


async def test_support_restores_the_cart_as_one_logged_change(
    alice: httpx.AsyncClient, agent: httpx.AsyncClient, customer_id: str
) -> None:
    states = await story(alice)
    base = f"/v1/customers/{customer_id}"
    r = await agent.post(
        f"{base}/cart/restore",
        json={"rev": 6, "reason": "customer emptied the cart by mistake"},
        headers={"X-Device-Id": "support-desk"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 9, "restored_rev": 6}
    now = await seen(alice)
    assert now["lines"] == states[6]["lines"]  # the cart of revision 6: socks x3 and the hat
    assert now["note"] == "gift"
    assert now["wishlists"] == states[8]["wishlists"]  # wishlists were not asked for
    history = (await alice.get("/v1/cart/history?since=8")).json()
    (event,) = history["events"]
    assert event["type"] == "cart.restored"
    assert event["actor"] == {"role": "support", "id": "emma", "device": "support-desk"}
    assert event["data"]["restored_rev"] == 6
    assert event["data"]["reason"] == "customer emptied the cart by mistake"
    # The customer can keep changing the restored cart as usual.
    r = await alice.post("/v1/cart/lines", json={"sku": "SOCKS", "qty": 1})
    assert r.status_code == 200
    assert r.json()["line"]["qty"] == 4


async def test_every_revision_restores_to_exactly_what_the_customer_saw(
    alice: httpx.AsyncClient, agent: httpx.AsyncClient, customer_id: str
) -> None:
    states = await story(alice)
    base = f"/v1/customers/{customer_id}"
    for rev in random.Random(16).sample(range(8), 8):
        r = await agent.post(
            f"{base}/cart/restore", json={"rev": rev, "reason": "test", "wishlists": True}
        )
        assert r.status_code == 200, (rev, r.text)
        assert await seen(alice) == states[rev], rev
        # A restore is itself a state the log holds: restore further from it.


async def test_restore_is_idempotent_and_if_match_aware(
    alice: httpx.AsyncClient, agent: httpx.AsyncClient, customer_id: str
) -> None:
    await story(alice)
    url = f"/v1/customers/{customer_id}/cart/restore"
    body = {"rev": 2, "reason": "customer request"}
    stale = await agent.post(url, json=body, headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "revision_mismatch"
    key = {"Idempotency-Key": uuid.uuid4().hex, "If-Match": '"8"'}
    first = await agent.post(url, json=body, headers=key)
    again = await agent.post(url, json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() == {"rev": 9, "restored_rev": 2}
    assert (await alice.get("/v1/cart")).json()["rev"] == 9


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"rev": 8, "reason": "x"}, 422, "restore_out_of_reach"),  # not in the past
        ({"rev": 99, "reason": "x"}, 422, "restore_out_of_reach"),
        ({"rev": 2}, 422, "invalid_field"),  # no reason
        ({"rev": 2, "reason": "   "}, 422, "reason_required"),
        ({"rev": 2, "reason": "x", "epoch": "0123456789abcdef"}, 409, "epoch_mismatch"),
        ({"rev": -1, "reason": "x"}, 422, "invalid_field"),
    ],
)
async def test_bad_restores_are_refused_and_change_nothing(
    alice: httpx.AsyncClient,
    agent: httpx.AsyncClient,
    customer_id: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    states = await story(alice)
    r = await agent.post(f"/v1/customers/{customer_id}/cart/restore", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert (await alice.get("/v1/cart")).json()["rev"] == 8
    assert await seen(alice) == states[8]


async def test_an_unknown_customer_has_nothing_to_restore(agent: httpx.AsyncClient) -> None:
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    cart = await agent.get(f"/v1/customers/{nobody}/cart")
    assert cart.status_code == 200
    assert cart.json()["rev"] == 0
    r = await agent.post(f"/v1/customers/{nobody}/cart/restore", json={"rev": 0, "reason": "x"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "restore_out_of_reach"


async def test_support_reads_need_a_reason_and_the_export_lists_them(
    alice: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    await alice.post("/v1/cart/lines", json={"sku": "SOCKS"})
    base = f"/v1/customers/{customer_id}"
    support = tokens.headers("support", "emma")
    for path in ("/cart", "/wishlists", "/grants", "/cart/history?since=0"):
        r = await alice.get(base + path, headers=support)
        assert r.status_code == 422, path
        assert r.json()["error"] == {
            "code": "reason_required",
            "message": r.json()["error"]["message"],
            "field": "X-Support-Reason",
        }
    export = (await alice.get("/v1/me/export")).json()
    assert export["support_reads"] == []  # refused reads read nothing
    why = "Kunden ringte: handlekurven er tømt"  # percent-encoded, as the page sends it
    r = await alice.get(f"{base}/cart", headers={**support, "X-Support-Reason": quote(why)})
    assert r.status_code == 200
    assert r.json()["lines"][0]["sku"] == "SOCKS"
    r = await alice.get(f"{base}/cart/history?since=0", headers={**support, **REASON})
    assert r.status_code == 200
    reads = (await alice.get("/v1/me/export")).json()["support_reads"]
    assert [(x["agent"], x["reason"], x["what"]) for x in reads] == [
        ("emma", REASON["X-Support-Reason"], f"GET {base}/cart/history"),
        ("emma", why, f"GET {base}/cart"),
    ]
    assert all(x["at"].endswith("Z") for x in reads)


async def test_erasing_the_customer_erases_the_record_of_support_reads(
    alice: httpx.AsyncClient, agent: httpx.AsyncClient, customer_id: str
) -> None:
    await alice.post("/v1/cart/lines", json={"sku": "SOCKS"})
    assert (await agent.get(f"/v1/customers/{customer_id}/cart")).status_code == 200
    assert len((await alice.get("/v1/me/export")).json()["support_reads"]) == 1
    assert (await alice.delete("/v1/me")).status_code == 200
    assert (await alice.get("/v1/me/export")).json()["support_reads"] == []


async def test_support_changes_nothing_but_restores(
    alice: httpx.AsyncClient, agent: httpx.AsyncClient, customer_id: str
) -> None:
    await alice.post("/v1/cart/lines", json={"sku": "SOCKS"})
    base = f"/v1/customers/{customer_id}"
    refused = [
        ("POST", f"{base}/cart/lines", {"sku": "X"}),
        ("POST", f"{base}/cart/checkout", None),
        ("DELETE", f"{base}/cart", None),
        ("DELETE", f"{base}/me", None),
        ("POST", f"{base}/handoffs", None),
        ("GET", "/v1/cart", None),  # support has no cart of its own
        ("POST", "/v1/cart/restore", {"rev": 0, "reason": "x"}),
    ]
    for method, path, body in refused:
        r = await agent.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    code = (await alice.post("/v1/handoffs")).json()["code"]
    r = await agent.post(f"/v1/handoffs/{code}/claim")
    assert r.status_code == 403
    assert (await alice.get("/v1/cart")).json()["rev"] == 1


async def test_only_support_restores(
    alice: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    await alice.post("/v1/cart/lines", json={"sku": "SOCKS"})
    await alice.delete("/v1/cart")
    body = {"rev": 1, "reason": "x"}
    own = await alice.post("/v1/cart/restore", json=body)
    service = await alice.post(
        f"/v1/customers/{customer_id}/cart/restore",
        json=body,
        headers=tokens.headers("service", "checkout-svc"),
    )
    for r in (own, service):
        assert r.status_code == 403, r.text
    assert (await alice.get("/v1/cart")).json()["lines"] == []


# Retention -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_log(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A log of 8 events (a snapshot every 2 revisions) and no time window."""
    env = service_env(
        redis_server.url,
        tmp_path_factory.mktemp("short-log"),
        CARTSYNC_EVENT_LOG_MAX="8",
        CARTSYNC_HISTORY_DAYS="0",
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def on_short_log(short_log: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=short_log.url, timeout=10) as c:
        yield c


async def test_restore_reaches_back_as_far_as_the_log_holds_a_snapshot(
    on_short_log: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    c = on_short_log
    me = tokens.headers("customer", customer_id)
    carts: list[list[tuple[str, int]]] = [[]]
    for i in range(1, 21):
        r = await c.post("/v1/cart/lines", json={"sku": f"SKU-{i % 3}"}, headers=me)
        assert r.status_code in (200, 201)
        carts.append(
            [(x["sku"], x["qty"]) for x in (await c.get("/v1/cart", headers=me)).json()["lines"]]
        )
    support = {**tokens.headers("support", "emma"), **REASON}
    base = f"/v1/customers/{customer_id}"
    history = (await c.get(f"{base}/cart/history?since=0", headers=support)).json()
    assert [e["rev"] for e in history["events"]] == list(range(13, 21))
    assert history["complete"] is False
    too_old = await c.post(f"{base}/cart/restore", json={"rev": 12, "reason": "x"}, headers=support)
    assert too_old.status_code == 422
    assert too_old.json()["error"]["code"] == "restore_out_of_reach"
    assert "oldest revision it can restore is 14" in too_old.json()["error"]["message"]
    for rev in (14, 17, 19):
        r = await c.post(f"{base}/cart/restore", json={"rev": rev, "reason": "x"}, headers=support)
        assert r.status_code == 200, r.text
        cart = (await c.get("/v1/cart", headers=me)).json()
        assert [(x["sku"], x["qty"]) for x in cart["lines"]] == carts[rev]


@pytest.fixture(scope="module")
def short_window(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """History kept for 2 seconds (CARTSYNC_HISTORY_DAYS takes fractions)."""
    env = service_env(
        redis_server.url,
        tmp_path_factory.mktemp("short-window"),
        CARTSYNC_HISTORY_DAYS=str(2 / 86400),
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_events_older_than_the_window_leave_the_log_at_the_next_change(
    short_window: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    with httpx.Client(base_url=short_window.url, headers=me, timeout=10) as c:
        for sku in ("A", "B", "C"):
            c.post("/v1/cart/lines", json={"sku": sku}).raise_for_status()
        assert len(c.get("/v1/cart/history?since=0").json()["events"]) == 3
        time.sleep(2.5)
        c.post("/v1/cart/lines", json={"sku": "D"}).raise_for_status()
        history = c.get("/v1/cart/history?since=0").json()
        assert [e["rev"] for e in history["events"]] == [4]
        assert history["complete"] is False
        assert [x["sku"] for x in c.get("/v1/cart").json()["lines"]] == ["A", "B", "C", "D"]


async def random_change(c: httpx.AsyncClient, rnd: random.Random) -> None:
    """One change a shopper could make, picked at random among those the state allows."""
    cart = (await c.get("/v1/cart")).json()
    lists = (await c.get("/v1/wishlists")).json()["wishlists"]
    lines = [x["id"] for x in cart["lines"]]
    named = [w["id"] for w in lists if w["id"] not in ("default", "saved")]
    items = [(w["id"], i["id"]) for w in lists for i in w["items"]]
    sku = rnd.choice(("TEE", "MUG", "CAP", "PEN"))
    moves: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/cart/lines", {"sku": sku, "qty": rnd.randint(1, 3)}),
        ("PUT", "/v1/cart/note", {"note": f"note {rnd.randint(0, 99)}"}),
        (
            "POST",
            "/v1/wishlists/default/items",
            {"sku": sku, "attrs": {"n": str(rnd.randint(0, 9))}},
        ),
    ]
    if lines:
        line = rnd.choice(lines)
        moves += [
            ("PATCH", f"/v1/cart/lines/{line}", {"qty": rnd.randint(0, 4)}),
            ("POST", f"/v1/cart/lines/{line}/save-for-later", None),
            ("DELETE", "/v1/cart", None),
        ]
    if len(named) < 2:
        moves.append(("POST", "/v1/wishlists", {"name": f"List {rnd.randint(0, 999)}"}))
    if named:
        moves.append(("DELETE", f"/v1/wishlists/{rnd.choice(named)}", None))
    if items:
        wid, iid = rnd.choice(items)
        moves += [
            ("POST", f"/v1/wishlists/{wid}/items/{iid}/move-to-cart", {"qty": 1}),
            ("DELETE", f"/v1/wishlists/{wid}/items/{iid}", None),
        ]
    method, path, body = rnd.choice(moves)
    r = await c.request(method, path, json=body)
    assert r.status_code < 300 or r.status_code == 409, (method, path, r.text)


async def test_random_stories_restore_exactly_from_snapshots_and_replays(
    on_short_log: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    """Random changes of cart and wishlists, and restores among them; every revision the log
    still reaches comes back exactly as the customer saw it, with its wishlists."""
    c = on_short_log
    c.headers.update(tokens.headers("customer", customer_id))
    support = {**tokens.headers("support", "emma"), **REASON}
    url = f"/v1/customers/{customer_id}/cart/restore"
    rnd = random.Random(1616)
    states: dict[int, dict[str, Any]] = {}
    for _ in range(40):
        await random_change(c, rnd)
        cart = (await c.get("/v1/cart")).json()
        states[cart["rev"]] = await seen(c)
        if rnd.random() < 0.15 and cart["rev"] > 3:
            back = rnd.randint(max(1, cart["rev"] - 4), cart["rev"] - 1)
            r = await c.post(
                url, json={"rev": back, "reason": "r", "wishlists": True}, headers=support
            )
            assert r.status_code == 200, r.text
            states[r.json()["rev"]] = await seen(c)
            assert states[r.json()["rev"]] == states[back]
    rev = (await c.get("/v1/cart")).json()["rev"]
    restored = 0
    for back in range(max(1, rev - 8), rev):
        r = await c.post(url, json={"rev": back, "reason": "r", "wishlists": True}, headers=support)
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "restore_out_of_reach"
            continue
        assert r.status_code == 200, r.text
        assert await seen(c) == states[back], back
        restored += 1
        rev = r.json()["rev"]
    assert restored >= 4
