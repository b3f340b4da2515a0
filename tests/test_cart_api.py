"""The happy paths a shop walks through the HTTP API, each checked by reading the state back."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from cartsync.web.app import ENDPOINTS

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LINE_FIELDS = {"id", "sku", "qty", "attrs", "added_at", "updated_at", "updated_by"}


async def add_line(
    c: httpx.AsyncClient, sku: str, qty: int = 1, attrs: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"sku": sku, "qty": qty, **extra}
    if attrs is not None:
        body["attrs"] = attrs
    return await c.post("/v1/cart/lines", json=body)


async def cart(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/v1/cart")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{r.json()["rev"]}"'
    return r.json()


async def wishlists(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/v1/wishlists")
    assert r.status_code == 200, r.text
    return r.json()


async def wishlist(c: httpx.AsyncClient, wishlist_id: str) -> dict[str, Any]:
    r = await c.get(f"/v1/wishlists/{wishlist_id}")
    assert r.status_code == 200, r.text
    return r.json()["wishlist"]


async def history(c: httpx.AsyncClient, since: int = 0) -> list[dict[str, Any]]:
    r = await c.get("/v1/cart/history", params={"since": since})
    assert r.status_code == 200, r.text
    return r.json()["events"]


def error_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return r.json()["error"]


# Cart ----------------------------------------------------------------------------------------


async def test_empty_cart_is_revision_zero(alice: httpx.AsyncClient, customer_id: str) -> None:
    r = await alice.get("/v1/cart")
    assert r.status_code == 200
    assert r.headers["etag"] == '"0"'
    expected = {
        "owner": f"c:{customer_id}",
        "rev": 0,
        "cart_id": None,
        "currency": "EUR",
        "lines": [],
        "note": "",
        "updated_at": None,
    }
    assert {k: v for k, v in r.json().items() if k in expected} == expected


async def test_add_line_returns_the_line_and_etag(
    alice: httpx.AsyncClient, customer_id: str
) -> None:
    r = await add_line(alice, "SKU-1", 2, {"size": "M"}, title="Blue shirt", unit_price="19.90")
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    body = r.json()
    assert body["rev"] == 1
    line = body["line"]
    assert set(line) == LINE_FIELDS | {"title", "unit_price", "currency", "priced", "priced_by"}
    assert (line["currency"], line["priced"], line["priced_by"]) == ("EUR", True, "client")
    assert line["sku"] == "SKU-1"
    assert line["qty"] == 2
    assert line["attrs"] == {"size": "M"}
    assert line["title"] == "Blue shirt"
    assert line["unit_price"] == "19.90"
    assert line["updated_by"] == {"role": "customer", "id": customer_id}
    assert ISO_MS.match(line["added_at"])
    assert line["updated_at"] == line["added_at"]

    state = await cart(alice)
    assert state["rev"] == 1
    assert state["lines"] == [line]
    assert state["cart_id"]
    assert state["updated_at"] == line["updated_at"]


async def test_line_without_attrs_has_empty_attrs(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v1/cart/lines", json={"sku": "plain"})
    assert r.status_code == 201, r.text
    assert r.json()["line"]["qty"] == 1
    assert r.json()["line"]["attrs"] == {}
    assert (await cart(alice))["lines"][0]["attrs"] == {}


async def test_same_sku_and_attrs_sums_into_one_line(alice: httpx.AsyncClient) -> None:
    first = await add_line(alice, "SKU-1", 2, {"size": "M", "colour": "red"})
    assert first.status_code == 201
    again = await add_line(alice, "SKU-1", 3, {"colour": "red", "size": "M"})
    assert again.status_code == 200, again.text
    assert again.headers["etag"] == '"2"'
    assert again.json()["rev"] == 2
    assert again.json()["line"]["id"] == first.json()["line"]["id"]
    assert again.json()["line"]["qty"] == 5
    assert again.json()["line"]["added_at"] == first.json()["line"]["added_at"]

    state = await cart(alice)
    assert [(x["sku"], x["qty"]) for x in state["lines"]] == [("SKU-1", 5)]


async def test_different_attrs_make_a_new_line(alice: httpx.AsyncClient) -> None:
    m = await add_line(alice, "SKU-1", 1, {"size": "M"})
    xl = await add_line(alice, "SKU-1", 1, {"size": "XL"})
    bare = await add_line(alice, "SKU-1", 1)
    assert (m.status_code, xl.status_code, bare.status_code) == (201, 201, 201)
    ids = {m.json()["line"]["id"], xl.json()["line"]["id"], bare.json()["line"]["id"]}
    assert len(ids) == 3
    state = await cart(alice)
    assert [x["attrs"] for x in state["lines"]] == [{"size": "M"}, {"size": "XL"}, {}]
    assert state["rev"] == 3


async def test_patch_qty(alice: httpx.AsyncClient) -> None:
    line = (await add_line(alice, "SKU-1", 1)).json()["line"]
    r = await alice.patch(f"/v1/cart/lines/{line['id']}", json={"qty": 7})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    assert r.json()["rev"] == 2
    assert r.json()["line"]["qty"] == 7
    assert r.json()["line"]["id"] == line["id"]
    assert (await cart(alice))["lines"] == [r.json()["line"]]


async def test_patch_attrs(alice: httpx.AsyncClient) -> None:
    line = (await add_line(alice, "SKU-1", 2, {"size": "M"})).json()["line"]
    r = await alice.patch(f"/v1/cart/lines/{line['id']}", json={"attrs": {"size": "L"}})
    assert r.status_code == 200, r.text
    assert r.json()["line"]["attrs"] == {"size": "L"}
    assert r.json()["line"]["qty"] == 2
    # The line is now found under its new attrs: adding size L sums into it.
    again = await add_line(alice, "SKU-1", 1, {"size": "L"})
    assert again.status_code == 200
    assert again.json()["line"]["id"] == line["id"]
    assert again.json()["line"]["qty"] == 3
    # ... and size M makes a new line again.
    m = await add_line(alice, "SKU-1", 1, {"size": "M"})
    assert m.status_code == 201
    state = await cart(alice)
    assert [(x["attrs"], x["qty"]) for x in state["lines"]] == [
        ({"size": "L"}, 3),
        ({"size": "M"}, 1),
    ]


async def test_patch_attrs_onto_another_line_is_a_conflict(alice: httpx.AsyncClient) -> None:
    m = (await add_line(alice, "SKU-1", 1, {"size": "M", "fit": "slim"})).json()["line"]
    await add_line(alice, "SKU-1", 1, {"size": "L", "fit": "slim"})
    before = await cart(alice)
    r = await alice.patch(f"/v1/cart/lines/{m['id']}", json={"attrs": {"fit": "slim", "size": "L"}})
    assert r.status_code == 409, r.text
    assert error_of(r)["code"] == "line_conflict"
    assert error_of(r)["field"] == "attrs"
    assert await cart(alice) == before


async def test_patch_qty_zero_removes_the_line(alice: httpx.AsyncClient) -> None:
    line = (await add_line(alice, "SKU-1", 4)).json()["line"]
    r = await alice.patch(f"/v1/cart/lines/{line['id']}", json={"qty": 0})
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 2, "removed": line["id"]}
    state = await cart(alice)
    assert state["lines"] == []
    assert state["rev"] == 2
    assert [e["type"] for e in await history(alice)] == ["line.added", "line.removed"]


async def test_delete_line(alice: httpx.AsyncClient) -> None:
    keep = (await add_line(alice, "KEEP")).json()["line"]
    drop = (await add_line(alice, "DROP")).json()["line"]
    r = await alice.delete(f"/v1/cart/lines/{drop['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 3, "removed": drop["id"]}
    assert r.headers["etag"] == '"3"'
    assert [x["id"] for x in (await cart(alice))["lines"]] == [keep["id"]]
    # Gone for good: a second delete finds nothing.
    assert (await alice.delete(f"/v1/cart/lines/{drop['id']}")).status_code == 404


async def test_delete_cart_removes_every_line(alice: httpx.AsyncClient) -> None:
    for sku in ("A", "B", "C"):
        await add_line(alice, sku)
    r = await alice.delete("/v1/cart")
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 4}
    state = await cart(alice)
    assert state["lines"] == []
    assert state["rev"] == 4
    assert (await history(alice, 3))[0]["type"] == "cart.cleared"


async def test_put_note(alice: httpx.AsyncClient) -> None:
    r = await alice.put("/v1/cart/note", json={"note": "Gift wrap, please ✨"})
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 1, "note": "Gift wrap, please ✨"}
    assert (await cart(alice))["note"] == "Gift wrap, please ✨"
    cleared = await alice.put("/v1/cart/note", json={"note": ""})
    assert cleared.json() == {"rev": 2, "note": ""}
    assert (await cart(alice))["note"] == ""


async def test_save_for_later_moves_the_line_into_saved(
    alice: httpx.AsyncClient, customer_id: str
) -> None:
    keep = (await add_line(alice, "KEEP")).json()["line"]
    line = (await add_line(alice, "SKU-1", 3, {"size": "M"}, title="Shirt")).json()["line"]
    r = await alice.post(f"/v1/cart/lines/{line['id']}/save-for-later")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rev"] == 3
    assert body["wishlist_id"] == "saved"
    item = body["item"]
    assert (item["sku"], item["attrs"], item["title"]) == ("SKU-1", {"size": "M"}, "Shirt")
    assert item["added_by"] == {"role": "customer", "id": customer_id}

    assert [x["id"] for x in (await cart(alice))["lines"]] == [keep["id"]]
    saved = await wishlist(alice, "saved")
    assert saved["name"] == "saved"
    assert saved["items"] == [item]
    assert [w["id"] for w in (await wishlists(alice))["wishlists"]] == ["default", "saved"]
    assert (await history(alice, 2))[0]["type"] == "line.saved_for_later"


async def test_checkout_freezes_the_cart_and_starts_a_new_one(
    alice: httpx.AsyncClient, customer_id: str
) -> None:
    a = (await add_line(alice, "A", 2)).json()["line"]
    b = (await add_line(alice, "B", 1, {"size": "S"})).json()["line"]
    await alice.put("/v1/cart/note", json={"note": "ring twice"})
    before = await cart(alice)
    old_cart_id = before["cart_id"]

    r = await alice.post("/v1/cart/checkout")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"4"'
    body = r.json()
    assert body["rev"] == 4
    snapshot = body["checkout"]
    assert snapshot["cart_id"] == old_cart_id
    assert snapshot["owner"] == f"c:{customer_id}"
    assert snapshot["currency"] == "EUR"
    assert snapshot["note"] == "ring twice"
    assert snapshot["lines"] == [a, b]
    assert ISO_MS.match(snapshot["checked_out_at"])
    new_cart_id = body["cart_id"]
    assert new_cart_id
    assert new_cart_id != old_cart_id

    after = await cart(alice)
    assert after["lines"] == []
    assert after["note"] == ""
    assert after["cart_id"] == new_cart_id
    assert after["rev"] == 4

    events = await history(alice, 3)
    assert [e["type"] for e in events] == ["cart.checked_out"]
    assert events[0]["rev"] == 4
    assert events[0]["data"]["checkout"] == snapshot

    # The new cart is a normal cart.
    assert (await add_line(alice, "C")).status_code == 201
    assert (await cart(alice))["cart_id"] == new_cart_id


async def test_checkout_of_empty_cart_is_refused(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v1/cart/checkout")
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "cart_empty"
    assert (await cart(alice))["rev"] == 0
    # Emptied by hand: still refused.
    line = (await add_line(alice, "A")).json()["line"]
    await alice.delete(f"/v1/cart/lines/{line['id']}")
    r = await alice.post("/v1/cart/checkout")
    assert error_of(r)["code"] == "cart_empty"
    assert (await cart(alice))["rev"] == 2


async def test_history_since_returns_later_events_in_order(alice: httpx.AsyncClient) -> None:
    a = (await add_line(alice, "A")).json()["line"]  # 1 line.added
    await add_line(alice, "A", 2)  # 2 line.updated
    await alice.put("/v1/cart/note", json={"note": "n"})  # 3 cart.note_set
    await alice.post("/v1/wishlists", json={"name": "Gifts"})  # 4 wishlist.created
    await alice.patch(f"/v1/cart/lines/{a['id']}", json={"qty": 0})  # 5 line.removed

    everything = await alice.get("/v1/cart/history")
    assert everything.status_code == 200
    body = everything.json()
    assert (body["rev"], body["since"], body["complete"]) == (5, 0, True)
    assert everything.headers["etag"] == '"5"'
    assert [(e["rev"], e["type"]) for e in body["events"]] == [
        (1, "line.added"),
        (2, "line.updated"),
        (3, "cart.note_set"),
        (4, "wishlist.created"),
        (5, "line.removed"),
    ]
    for since in range(6):
        events = await history(alice, since)
        assert [e["rev"] for e in events] == list(range(since + 1, 6))
    assert (await history(alice, 2))[0]["data"] == {"note": "n"}
    assert await history(alice, 99) == []


async def test_device_id_is_recorded_on_lines_and_events(
    alice: httpx.AsyncClient, customer_id: str
) -> None:
    r = await alice.post("/v1/cart/lines", json={"sku": "A"}, headers={"X-Device-Id": "phone-1"})
    assert r.json()["line"]["updated_by"] == {
        "role": "customer",
        "id": customer_id,
        "device": "phone-1",
    }
    line_id = r.json()["line"]["id"]
    r = await alice.patch(
        f"/v1/cart/lines/{line_id}", json={"qty": 2}, headers={"X-Device-Id": "laptop"}
    )
    assert r.json()["line"]["updated_by"]["device"] == "laptop"
    r = await alice.patch(f"/v1/cart/lines/{line_id}", json={"qty": 3})
    assert "device" not in r.json()["line"]["updated_by"]

    assert (await cart(alice))["lines"][0]["updated_by"] == {"role": "customer", "id": customer_id}
    actors = [e["actor"] for e in await history(alice)]
    assert actors == [
        {"role": "customer", "id": customer_id, "device": "phone-1"},
        {"role": "customer", "id": customer_id, "device": "laptop"},
        {"role": "customer", "id": customer_id},
    ]


async def test_if_none_match_with_current_etag_is_304(alice: httpx.AsyncClient) -> None:
    empty = await alice.get("/v1/cart", headers={"If-None-Match": '"0"'})
    assert empty.status_code == 304
    assert empty.headers["etag"] == '"0"'
    assert empty.content == b""

    await add_line(alice, "A")
    stale = await alice.get("/v1/cart", headers={"If-None-Match": '"0"'})
    assert stale.status_code == 200
    assert stale.json()["rev"] == 1
    fresh = await alice.get("/v1/cart", headers={"If-None-Match": stale.headers["etag"]})
    assert fresh.status_code == 304
    assert fresh.content == b""


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ('"0", "1"', 304),  # a list: one of them is current
        ('W/"1"', 304),  # If-None-Match compares weakly
        ("*", 304),
        ('"0", W/"7"', 200),
        ("1", 400),  # not an ETag: a client bug, answered as one
        ('"abc"', 400),
    ],
)
async def test_if_none_match_takes_a_list_of_etags(
    alice: httpx.AsyncClient, header: str, status: int
) -> None:
    await add_line(alice, "A")
    r = await alice.get("/v1/cart", headers={"If-None-Match": header})
    assert r.status_code == status, r.text
    if status == 400:
        assert error_of(r) == {
            "code": "bad_header",
            "message": 'If-None-Match must be * or ETags like "12", comma-separated',
            "field": "If-None-Match",
        }
    else:
        assert r.headers["etag"] == '"1"'


async def test_history_pages_with_limit_and_limit_zero_answers_no_events(
    alice: httpx.AsyncClient,
) -> None:
    for sku in "ABCDE":
        await add_line(alice, sku)
    pages, since = [], 0
    for _ in range(5):
        r = await alice.get("/v1/cart/history", params={"since": since, "limit": 2})
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        if not events:
            break
        pages.append([e["rev"] for e in events])
        since = events[-1]["rev"]
    assert pages == [[1, 2], [3, 4], [5]]

    r = await alice.get("/v1/cart/history", params={"since": 0, "limit": 0})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "rev": 5,
        "epoch": r.json()["epoch"],
        "since": 0,
        "complete": True,
        "events": [],
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/v1/grants/"), ("GET", "/v1/cart/"), ("POST", "/v1/cart/lines/")],
)
async def test_a_trailing_slash_is_a_json_404_not_a_redirect(
    alice: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await alice.request(method, path)
    assert r.status_code == 404, r.text
    assert "location" not in r.headers
    assert error_of(r) == {"code": "route_not_found", "message": "no such route"}


async def test_patching_a_line_with_nothing_is_refused(alice: httpx.AsyncClient) -> None:
    line = (await add_line(alice, "A")).json()["line"]
    r = await alice.patch(f"/v1/cart/lines/{line['id']}", json={})
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == "qty"
    assert (await cart(alice))["rev"] == 1


async def test_if_match_with_current_etag_applies(alice: httpx.AsyncClient) -> None:
    etag = (await alice.get("/v1/cart")).headers["etag"]
    r = await alice.post("/v1/cart/lines", json={"sku": "A"}, headers={"If-Match": etag})
    assert r.status_code == 201, r.text
    r = await alice.put(
        "/v1/cart/note", json={"note": "x"}, headers={"If-Match": r.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    assert (await cart(alice))["rev"] == 2


# Wishlists -----------------------------------------------------------------------------------


async def test_default_wishlist_is_listed_when_empty(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/v1/wishlists")
    assert r.status_code == 200
    assert r.headers["etag"] == '"0"'
    assert r.json() == {"rev": 0, "wishlists": [{"id": "default", "name": "default", "items": []}]}
    assert await wishlist(alice, "default") == {"id": "default", "name": "default", "items": []}


async def create_wishlist(c: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await c.post("/v1/wishlists", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["wishlist"]


async def test_create_wishlist(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v1/wishlists", json={"name": "  Birthday  "})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    body = r.json()
    assert body["rev"] == 1
    created = body["wishlist"]
    assert created["name"] == "Birthday"
    assert created["items"] == []
    assert ISO_MS.match(created["created_at"])
    listed = (await wishlists(alice))["wishlists"]
    assert [w["id"] for w in listed] == ["default", created["id"]]
    assert listed[1] == created
    assert [e["type"] for e in await history(alice)] == ["wishlist.created"]


async def test_duplicate_wishlist_name_is_a_conflict(alice: httpx.AsyncClient) -> None:
    await create_wishlist(alice, "Birthday")
    before = await wishlists(alice)
    for name in ("Birthday", "birthday", "BIRTHDAY ", "Default", "SAVED"):
        r = await alice.post("/v1/wishlists", json={"name": name})
        assert r.status_code == 409, (name, r.text)
        assert error_of(r)["code"] == "wishlist_name_taken"
        assert error_of(r)["field"] == "name"
    assert await wishlists(alice) == before


async def test_rename_wishlist(alice: httpx.AsyncClient) -> None:
    w = await create_wishlist(alice, "Birthday")
    other = await create_wishlist(alice, "Xmas")
    await alice.post(f"/v1/wishlists/{w['id']}/items", json={"sku": "A"})
    r = await alice.patch(f"/v1/wishlists/{w['id']}", json={"name": "Anniversary"})
    assert r.status_code == 200, r.text
    renamed = r.json()["wishlist"]
    assert renamed["id"] == w["id"]
    assert renamed["name"] == "Anniversary"
    assert [i["sku"] for i in renamed["items"]] == ["A"]
    assert (await wishlist(alice, w["id"]))["name"] == "Anniversary"
    # Changing only the case of its own name is fine; taking another list's name is not.
    assert (
        await alice.patch(f"/v1/wishlists/{w['id']}", json={"name": "ANNIVERSARY"})
    ).status_code == 200
    clash = await alice.patch(f"/v1/wishlists/{other['id']}", json={"name": "anniversary"})
    assert clash.status_code == 409
    assert error_of(clash)["code"] == "wishlist_name_taken"


async def test_delete_wishlist(alice: httpx.AsyncClient) -> None:
    w = await create_wishlist(alice, "Birthday")
    await alice.post(f"/v1/wishlists/{w['id']}/items", json={"sku": "A"})
    r = await alice.delete(f"/v1/wishlists/{w['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 3, "removed": w["id"]}
    assert [x["id"] for x in (await wishlists(alice))["wishlists"]] == ["default"]
    assert (await alice.get(f"/v1/wishlists/{w['id']}")).status_code == 404
    # The name is free again.
    await create_wishlist(alice, "Birthday")


async def test_system_wishlists_are_protected(alice: httpx.AsyncClient) -> None:
    line = (await add_line(alice, "A")).json()["line"]
    await alice.post(f"/v1/cart/lines/{line['id']}/save-for-later")
    before = (await wishlists(alice), await cart(alice))
    for wishlist_id in ("default", "saved"):
        for r in (
            await alice.delete(f"/v1/wishlists/{wishlist_id}"),
            await alice.patch(f"/v1/wishlists/{wishlist_id}", json={"name": "mine"}),
        ):
            assert r.status_code == 422, r.text
            assert error_of(r)["code"] == "wishlist_protected"
            assert error_of(r)["field"] == "wishlist_id"
    assert (await wishlists(alice), await cart(alice)) == before


async def test_add_item_and_add_it_again(alice: httpx.AsyncClient, customer_id: str) -> None:
    w = await create_wishlist(alice, "Birthday")
    path = f"/v1/wishlists/{w['id']}/items"
    r = await alice.post(
        path, json={"sku": "A", "attrs": {"size": "M", "fit": "slim"}, "note": "hint"}
    )
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"2"'
    body = r.json()
    assert body["rev"] == 2
    assert body["created"] is True
    item = body["item"]
    assert (item["sku"], item["attrs"], item["note"]) == ("A", {"size": "M", "fit": "slim"}, "hint")
    assert item["added_by"] == {"role": "customer", "id": customer_id}

    again = await alice.post(path, json={"sku": "A", "attrs": {"fit": "slim", "size": "M"}})
    assert again.status_code == 200, again.text
    assert again.json() == {"rev": 2, "item": item, "created": False}
    assert (await wishlist(alice, w["id"]))["items"] == [item]
    assert (await wishlists(alice))["rev"] == 2
    assert [e["rev"] for e in await history(alice)] == [1, 2]


async def test_add_item_to_default_wishlist(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v1/wishlists/default/items", json={"sku": "A"})
    assert r.status_code == 201, r.text
    default = await wishlist(alice, "default")
    assert default["items"] == [r.json()["item"]]
    assert (await history(alice))[0]["type"] == "wishlist.item_added"


async def test_remove_item(alice: httpx.AsyncClient) -> None:
    a = (await alice.post("/v1/wishlists/default/items", json={"sku": "A"})).json()["item"]
    b = (await alice.post("/v1/wishlists/default/items", json={"sku": "B"})).json()["item"]
    r = await alice.delete(f"/v1/wishlists/default/items/{a['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"rev": 3, "removed": a["id"]}
    assert (await wishlist(alice, "default"))["items"] == [b]
    assert (await history(alice, 2))[0]["type"] == "wishlist.item_removed"


async def test_move_to_cart(alice: httpx.AsyncClient) -> None:
    w = await create_wishlist(alice, "Birthday")
    item = (
        await alice.post(
            f"/v1/wishlists/{w['id']}/items",
            json={"sku": "A", "attrs": {"size": "M"}, "title": "Shirt"},
        )
    ).json()["item"]
    r = await alice.post(
        f"/v1/wishlists/{w['id']}/items/{item['id']}/move-to-cart", json={"qty": 2}
    )
    assert r.status_code == 200, r.text
    line = r.json()["line"]
    assert (line["sku"], line["attrs"], line["qty"], line["title"]) == (
        "A",
        {"size": "M"},
        2,
        "Shirt",
    )
    assert (await cart(alice))["lines"] == [line]
    assert (await wishlist(alice, w["id"]))["items"] == []
    assert (await history(alice, 2))[0]["type"] == "wishlist.item_moved_to_cart"


async def test_move_to_cart_sums_into_an_existing_line(alice: httpx.AsyncClient) -> None:
    existing = (await add_line(alice, "A", 3, {"size": "M"})).json()["line"]
    item = (
        await alice.post("/v1/wishlists/default/items", json={"sku": "A", "attrs": {"size": "M"}})
    ).json()["item"]
    r = await alice.post(f"/v1/wishlists/default/items/{item['id']}/move-to-cart")
    assert r.status_code == 200, r.text
    assert r.json()["line"]["id"] == existing["id"]
    assert r.json()["line"]["qty"] == 4
    state = await cart(alice)
    assert [(x["id"], x["qty"]) for x in state["lines"]] == [(existing["id"], 4)]
    assert (await wishlist(alice, "default"))["items"] == []


# OpenAPI -------------------------------------------------------------------------------------


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/"), ref
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def refs_in(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


async def test_openapi_lists_every_endpoint_under_both_prefixes(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    spec = r.json()
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for ref in refs_in(spec):
        resolve(spec, ref)

    operation_ids: list[str] = []
    for ep in ENDPOINTS:
        for prefix in ("/v1", "/v1/customers/{customer_id}"):
            path = prefix + ep.path
            assert path in spec["paths"], path
            op = spec["paths"][path].get(ep.method.lower())
            assert op is not None, f"{ep.method} {path} missing"
            operation_ids.append(op["operationId"])
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            assert str(ep.status) in op["responses"]
            assert {"401", "404"} <= set(op["responses"])
            assert op["security"] == [{"bearer": []}]
            assert ("requestBody" in op) == (ep.body is not None), path
            if ep.body is not None:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                assert resolve(spec, schema["$ref"])["type"] == "object"
    assert len(operation_ids) == len(set(operation_ids)) == 2 * len(ENDPOINTS)
    assert {"/healthz", "/v1/guest"} <= set(spec["paths"])
