"""Click-and-collect with a store and a pick-up time, over REST and the live socket.

Times are made from GET /v1/stores and the clock, never written down: the stores in
tests/support/stores.py take pick-ups at whatever hour the suite runs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from cartsync.domain.model import Actor
from cartsync.domain.principal import Owner, Role
from cartsync.errors import InvalidInput
from cartsync.settings import Settings
from cartsync.storage.connection import connect
from cartsync.storage.store import WriteContext
from tests.conftest import Tokens
from tests.support.cart_store import cart_store
from tests.support.processes import RedisProcess, ServiceProcess, service_env
from tests.support.stores import STORES, write_stores
from tests.test_event_catalogue import Frames, decode_strictly, live_socket

NO_CHOICE = {"store_id": None, "store_name": None, "pickup_at": None}


@pytest.fixture(scope="module")
def shop(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("collect")
    env = service_env(redis_server.url, data, CARTSYNC_STORES_FILE=str(write_stores(data)))
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def me(shop: ServiceProcess, tokens: Tokens) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh customer of the shop with stores, with one line in the cart."""
    who = f"cust-{uuid.uuid4().hex[:12]}"
    headers = tokens.headers("customer", who)
    async with httpx.AsyncClient(base_url=shop.url, headers=headers, timeout=10) as c:
        c.headers["X-Customer"] = who  # for the tests that open the live socket as them
        r = await c.post("/v1/cart/lines", json={"sku": "MUG-1", "title": "Mug"})
        assert r.status_code == 201, r.text
        yield c


async def synced(ws: ClientConnection) -> Frames:
    live = Frames(ws)
    assert (await live.next())["type"] == "hello"
    await ws.send('{"type": "sync"}')
    assert (await live.next())["type"] == "snapshot"
    return live


async def stores(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await c.get("/v1/stores", headers={"Authorization": ""})
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["stores"]}


async def cart(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/v1/cart")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def local(store_id: str, days: int, hh: int, mm: int) -> str:
    """A wall-clock time ``days`` after today in the store's timezone, with its offset."""
    zone = ZoneInfo(next(s["timezone"] for s in STORES if s["id"] == store_id))
    day = datetime.now(zone).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=zone).isoformat()


async def test_stores_list_their_next_slots_in_local_time(me: httpx.AsyncClient) -> None:
    listed = await stores(me)
    assert list(listed) == ["oslo-sentrum", "brooklyn"]
    now = datetime.now(UTC)
    for s in listed.values():
        slots = [datetime.fromisoformat(at) for at in s["next_slots"]]
        assert slots, s["id"]
        assert slots == sorted(slots)
        zone = ZoneInfo(s["timezone"])
        for at in slots:
            assert at.utcoffset() == at.astimezone(zone).utcoffset()
            assert at >= now + timedelta(minutes=s["lead_minutes"])
            assert at.astimezone(zone).minute % s["slot_minutes"] == 0
    assert listed["oslo-sentrum"]["hours"]["mon"] == {"open": "06:00", "close": "22:00"}


async def test_a_choice_round_trips_through_the_snapshot_and_the_live_event(
    me: httpx.AsyncClient, shop: ServiceProcess, tokens: Tokens
) -> None:
    slot = (await stores(me))["oslo-sentrum"]["next_slots"][0]
    in_utc = datetime.fromisoformat(slot).astimezone(UTC).isoformat().replace("+00:00", "Z")
    token = tokens.token("customer", me.headers["X-Customer"])
    async with live_socket(shop, token) as ws:
        live = await synced(ws)
        r = await me.put(
            "/v1/cart/collection", json={"store_id": "oslo-sentrum", "pickup_at": in_utc}
        )
        assert r.status_code == 200, r.text
        chosen = {"store_id": "oslo-sentrum", "store_name": "Oslo Sentrum", "pickup_at": slot}
        assert r.json() == {"rev": 2, "ready": False, "collection": {**chosen, "ready": False}}
        await live.until_rev(2)
    event = decode_strictly(live.events[-1])
    assert (event.type, json.loads(bytes(event.data))) == (
        "cart.collection_set",
        {**chosen, "ready": False},
    )
    snapshot = await cart(me)
    assert snapshot["collection"] == {**chosen, "ready": False}
    assert snapshot["ready_for_collection"] is False

    # Staff mark it ready: the choice stays; then the shopper changes the time.
    r = await me.put("/v1/cart/collection", json={"ready": True})
    assert r.json()["collection"] == {**chosen, "ready": True}
    later = (await stores(me))["brooklyn"]["next_slots"][-1]
    r = await me.put("/v1/cart/collection", json={"store_id": "brooklyn", "pickup_at": later})
    assert r.status_code == 200, r.text
    snapshot = await cart(me)
    assert snapshot["collection"] == {
        "store_id": "brooklyn",
        "store_name": "Brooklyn Heights",
        "pickup_at": later,
        "ready": True,
    }
    assert snapshot["ready_for_collection"] is True

    # Both null clears the choice and keeps ready.
    r = await me.put("/v1/cart/collection", json={"store_id": None, "pickup_at": None})
    assert r.status_code == 200, r.text
    assert (await cart(me))["collection"] == {**NO_CHOICE, "ready": True}
    types = [e["type"] for e in (await me.get("/v1/cart/history")).json()["events"]]
    assert types == ["line.added"] + ["cart.collection_set"] * 4


def bad_choices() -> dict[str, tuple[dict[str, Any], str, str]]:
    """body -> (code, field, part of the message) for every choice the service must refuse."""
    now = datetime.now(UTC)
    tomorrow_noon = local("oslo-sentrum", 1, 12, 0)
    quarter = now.replace(second=0, microsecond=0) + timedelta(minutes=15 - now.minute % 15)
    ny = quarter.astimezone(ZoneInfo("America/New_York"))  # a slot start inside the lead time
    return {
        "unknown store": (
            {"store_id": "bergen", "pickup_at": tomorrow_noon},
            "unknown_store",
            "store_id",
        ),
        "in the past": (
            {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", -1, 12, 0)},
            "invalid_pickup",
            "passed",
        ),
        "inside the lead time": (
            {"store_id": "brooklyn", "pickup_at": ny.isoformat()},
            "invalid_pickup",
            "60 minutes",
        ),
        "too far ahead": (
            {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 4, 12, 0)},
            "invalid_pickup",
            "3 days ahead",
        ),
        "outside opening hours": (
            {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 1, 22, 30)},
            "invalid_pickup",
            "06:00-22:00",
        ),
        "the last quarter before closing": (
            {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 1, 21, 50)},
            "invalid_pickup",
            "06:00-22:00",
        ),
        "not on a slot boundary": (
            {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 1, 12, 7)},
            "invalid_pickup",
            "every 15 minutes",
        ),
        "no offset": (
            {"store_id": "oslo-sentrum", "pickup_at": tomorrow_noon[:19]},
            "invalid_pickup",
            "offset",
        ),
        "not a time": (
            {"store_id": "oslo-sentrum", "pickup_at": "tomorrow at 3"},
            "invalid_pickup",
            "offset",
        ),
        "a store without a time": ({"store_id": "oslo-sentrum"}, "invalid_pickup", "pickup_at"),
        "a time without a store": ({"pickup_at": tomorrow_noon}, "invalid_pickup", "store_id"),
        "clearing only the store": (
            {"store_id": None, "pickup_at": tomorrow_noon},
            "invalid_pickup",
            "both null",
        ),
    }


async def test_every_bad_choice_is_a_422_naming_its_field_and_changes_nothing(
    me: httpx.AsyncClient,
) -> None:
    slot = (await stores(me))["oslo-sentrum"]["next_slots"][1]
    r = await me.put("/v1/cart/collection", json={"store_id": "oslo-sentrum", "pickup_at": slot})
    assert r.status_code == 200, r.text
    before = await cart(me)
    for name, (body, code, why) in bad_choices().items():
        r = await me.put("/v1/cart/collection", json={"ready": True, **body})
        assert r.status_code == 422, (name, r.text)
        error = r.json()["error"]
        assert error["code"] == code, (name, error)
        expected_field = "store_id" if why == "store_id" or code == "unknown_store" else "pickup_at"
        assert error["field"] == expected_field, (name, error)
        if why not in ("store_id", "pickup_at"):
            assert why in error["message"], (name, error)
        assert await cart(me) == before, name


async def test_an_empty_body_is_refused_and_ready_alone_still_works(
    me: httpx.AsyncClient,
) -> None:
    r = await me.put("/v1/cart/collection", json={})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_field"
    r = await me.put("/v1/cart/collection", json={"ready": True})
    assert r.json() == {"rev": 2, "ready": True, "collection": {**NO_CHOICE, "ready": True}}


async def test_an_empty_cart_cannot_choose_but_can_clear(me: httpx.AsyncClient) -> None:
    assert (await me.delete("/v1/cart")).status_code == 200
    slot = (await stores(me))["oslo-sentrum"]["next_slots"][0]
    r = await me.put("/v1/cart/collection", json={"store_id": "oslo-sentrum", "pickup_at": slot})
    assert r.status_code == 422
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("cart_empty", "store_id")
    r = await me.put("/v1/cart/collection", json={"store_id": None, "pickup_at": None})
    assert r.status_code == 200, r.text
    assert (await cart(me))["collection"] == {**NO_CHOICE, "ready": False}


async def test_checkout_carries_the_choice_and_clears_it(me: httpx.AsyncClient) -> None:
    slot = (await stores(me))["brooklyn"]["next_slots"][0]
    body = {"store_id": "brooklyn", "pickup_at": slot, "ready": True}
    assert (await me.put("/v1/cart/collection", json=body)).status_code == 200
    r = await me.post("/v1/cart/checkout")
    assert r.status_code == 200, r.text
    assert r.json()["checkout"]["collection"] == {
        "store_id": "brooklyn",
        "store_name": "Brooklyn Heights",
        "pickup_at": slot,
        "ready": True,
    }
    snapshot = await cart(me)
    assert snapshot["collection"] == {**NO_CHOICE, "ready": False}
    assert snapshot["ready_for_collection"] is False
    checked_out = (await me.get("/v1/cart/history")).json()["events"][-1]
    assert checked_out["type"] == "cart.checked_out"
    assert checked_out["data"]["checkout"]["collection"]["pickup_at"] == slot


async def test_a_replayed_choice_answers_the_same_and_applies_once(me: httpx.AsyncClient) -> None:
    slot = (await stores(me))["oslo-sentrum"]["next_slots"][2]
    body = {"store_id": "oslo-sentrum", "pickup_at": slot}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first, again = await asyncio.gather(
        me.put("/v1/cart/collection", json=body, headers=key),
        me.put("/v1/cart/collection", json=body, headers=key),
    )
    statuses = sorted([first.status_code, again.status_code])
    assert statuses in ([200, 200], [200, 409]), (first.text, again.text)
    replay = await me.put("/v1/cart/collection", json=body, headers=key)
    assert replay.status_code == 200
    assert replay.json() == next(r.json() for r in (first, again) if r.status_code == 200)
    assert (await cart(me))["rev"] == 2
    other = {"store_id": "brooklyn", "pickup_at": (await stores(me))["brooklyn"]["next_slots"][0]}
    reused = await me.put("/v1/cart/collection", json=other, headers=key)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_the_websocket_op_checks_the_same_rules(
    me: httpx.AsyncClient, shop: ServiceProcess, tokens: Tokens
) -> None:
    token = tokens.token("customer", me.headers["X-Customer"])
    slot = (await stores(me))["oslo-sentrum"]["next_slots"][0]
    async with live_socket(shop, token) as ws:
        live = await synced(ws)
        bad = {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 1, 12, 7)}
        await ws.send(
            json.dumps({"type": "op", "id": "bad", "name": "set_collection", "body": bad})
        )
        for _ in range(20):
            frame = await live.next()
            if frame["type"] == "nack":
                break
        assert frame["type"] == "nack"
        assert (frame["error"]["code"], frame["error"]["field"]) == ("invalid_pickup", "pickup_at")
        good = {"store_id": "oslo-sentrum", "pickup_at": slot}
        ack = await live.op("good", "set_collection", good)
        assert ack["rev"] == 2
    assert (await cart(me))["collection"]["pickup_at"] == slot


async def test_without_stores_a_choice_is_409_and_ready_still_works(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    """The session's service has no CARTSYNC_STORES_FILE."""
    assert (await client.get("/v1/stores")).json() == {"stores": []}
    client.headers.update(tokens.headers("customer", customer_id))
    assert (await client.post("/v1/cart/lines", json={"sku": "MUG-1"})).status_code == 201
    body = {"store_id": "oslo-sentrum", "pickup_at": local("oslo-sentrum", 1, 12, 0)}
    r = await client.put("/v1/cart/collection", json=body)
    assert r.status_code == 409
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (
        "collection_unavailable",
        "store_id",
    )
    assert (await client.get("/v1/cart")).json()["rev"] == 1
    r = await client.put("/v1/cart/collection", json={"ready": True})
    assert r.status_code == 200
    assert (await client.get("/v1/cart")).json()["ready_for_collection"] is True


def test_a_bad_stores_file_stops_start_up_naming_the_file_and_field(tmp_path: Path) -> None:
    from cartsync.settings import Settings, SettingsError

    path = tmp_path / "stores.json"
    path.write_text(json.dumps({"stores": [{**STORES[0], "slot_minutes": "30"}]}))
    with pytest.raises(SettingsError, match=r"CARTSYNC_STORES_FILE.*stores\.json.*slot_minutes"):
        Settings.from_env({"CARTSYNC_STORES_FILE": str(path)})
    path.write_text(json.dumps({"stores": [{**STORES[0], "timezone": "Oslo"}]}))
    with pytest.raises(SettingsError, match=r"stores\.json.*\$\.stores\[0\]\.timezone"):
        Settings.from_env({"CARTSYNC_STORES_FILE": str(path)})
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.from_env({"CARTSYNC_STORES_FILE": str(tmp_path / "missing.json")})


async def test_a_cart_that_never_chose_checks_out_with_an_empty_collection(
    me: httpx.AsyncClient,
) -> None:
    r = await me.post("/v1/cart/checkout")
    assert r.status_code == 200, r.text
    assert r.json()["checkout"]["collection"] == {**NO_CHOICE, "ready": False}


async def test_a_retried_choice_whose_time_came_too_close_replays_its_first_answer(
    redis_server: RedisProcess,
) -> None:
    """What the service does when a retry of an accepted choice arrives after its slot moved
    inside the lead time: ``_choose_pickup`` then hands the script the refusal (``late``), which
    only a fresh request gets. Driven at the store on a real Redis, since waiting for a real
    slot to pass would take minutes."""
    settings = Settings.from_env({"CARTSYNC_REDIS_URL": redis_server.url})
    redis = connect(settings)
    store = cart_store(redis, settings)
    owner = Owner(Role.CUSTOMER, f"late-{uuid.uuid4().hex}")
    actor = Actor(role="customer", id=owner.subject, device="test")
    try:
        line = {"sku": "SOCKS-5", "qty": 1, "attrs": {}, "key": "SOCKS-5"}
        await store.mutate(owner, "line_add", line, WriteContext(actor))
        pickup = '{"store_id":"oslo-sentrum","store_name":"Oslo Sentrum","pickup_at":"x"}'
        ctx = WriteContext(actor, idempotency_key=uuid.uuid4().hex, fingerprint="choose")
        first = await store.mutate(owner, "collection_set", {"pickup": pickup}, ctx)
        late = {"pickup": pickup, "late": "Oslo Sentrum cannot take a pick-up at x: too close"}
        again = await store.mutate(owner, "collection_set", late, ctx)
        assert (again.status, again.body, again.replayed) == (first.status, first.body, True)
        fresh = WriteContext(actor, idempotency_key=uuid.uuid4().hex, fingerprint="choose")
        with pytest.raises(InvalidInput) as refused:
            await store.mutate(owner, "collection_set", late, fresh)
        assert (refused.value.code, refused.value.field) == ("invalid_pickup", "pickup_at")
        assert "too close" in str(refused.value)
        assert (await store.snapshot(owner)).rev == first.rev
    finally:
        await redis.aclose()
