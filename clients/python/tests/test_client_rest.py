"""Every REST method of the client against a real service: what it sends is what the service
stores, and what it decodes is what a second read returns."""

from __future__ import annotations

import uuid

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

from cartsync_client import (
    CartsyncClient,
    CheckoutResult,
    Line,
    PatchLineResult,
    guest_token,
)
from client_testkit import FAST


async def test_cart_lines_round_trip(shopper: CartsyncClient, customer_id: str) -> None:
    added = await shopper.add_line(
        "TSHIRT-1", qty=2, attrs={"size": "L"}, title="T-shirt", unit_price="19.90"
    )
    assert added.rev == 1
    assert (added.line.sku, added.line.qty, added.line.attrs) == ("TSHIRT-1", 2, {"size": "L"})
    assert (added.line.title, added.line.unit_price) == ("T-shirt", "19.90")
    assert added.line.updated_by.device == "phone"

    again = await shopper.add_line("TSHIRT-1", qty=1, attrs={"size": "L"})
    assert (again.line.id, again.line.qty, again.rev) == (added.line.id, 3, 2)

    patched = await shopper.patch_line(added.line.id, qty=5, attrs={"size": "M"})
    assert isinstance(patched, PatchLineResult)
    assert patched.line is not None
    assert (patched.line.qty, patched.line.attrs, patched.removed) == (5, {"size": "M"}, None)

    cart = await shopper.get_cart()
    assert cart.owner == f"c:{customer_id}"
    assert cart.rev == 3
    assert cart.lines == [patched.line]

    zero = await shopper.patch_line(added.line.id, qty=0)
    assert (zero.line, zero.removed, zero.rev) == (None, added.line.id, 4)

    cap = await shopper.add_line("CAP-1")
    removed = await shopper.remove_line(cap.line.id)
    assert (removed.removed, removed.rev) == (cap.line.id, 6)
    assert (await shopper.get_cart()).lines == []


async def test_note_clear_checkout_and_history(shopper: CartsyncClient) -> None:
    await shopper.add_line("MUG-1", qty=2)
    note = await shopper.set_note("gift wrap, please")
    assert (note.note, note.rev) == ("gift wrap, please", 2)
    cleared = await shopper.clear_cart()
    assert cleared.rev == 3
    assert (await shopper.get_cart()).lines == []

    await shopper.add_line("MUG-1", qty=1)
    before = await shopper.get_cart()
    done = await shopper.checkout()
    assert isinstance(done, CheckoutResult)
    assert done.checkout.cart_id == before.cart_id
    assert done.checkout.note == "gift wrap, please"
    assert [(x.sku, x.qty) for x in done.checkout.lines] == [("MUG-1", 1)]
    after = await shopper.get_cart()
    assert (after.cart_id, after.lines, after.note) == (done.cart_id, [], "")

    history = await shopper.history()
    assert history.complete
    assert [e.rev for e in history.events] == [1, 2, 3, 4, 5]
    assert [e.type for e in history.events] == [
        "line.added",
        "cart.note_set",
        "cart.cleared",
        "line.added",
        "cart.checked_out",
    ]
    assert history.events[1].data == {"note": "gift wrap, please"}
    assert history.events[0].actor.device == "phone"
    page = await shopper.history(since=2, limit=2)
    assert (page.since, [e.rev for e in page.events]) == (2, [3, 4])


async def test_wishlists_round_trip(shopper: CartsyncClient) -> None:
    listed = await shopper.list_wishlists()
    assert [w.id for w in listed.wishlists] == ["default"]

    created = await shopper.create_wishlist("Birthday")
    wid = created.wishlist.id
    assert (created.wishlist.name, created.wishlist.items) == ("Birthday", [])
    renamed = await shopper.rename_wishlist(wid, "Birthday 2026")
    assert renamed.wishlist.name == "Birthday 2026"
    assert (await shopper.get_wishlist(wid)).wishlist == renamed.wishlist

    item = await shopper.add_item(wid, "LEGO-1", attrs={"set": "castle"}, title="Castle", note="!")
    assert item.created
    assert (item.item.sku, item.item.title, item.item.note) == ("LEGO-1", "Castle", "!")
    same = await shopper.add_item(wid, "LEGO-1", attrs={"set": "castle"})
    assert (same.created, same.item.id, same.rev) == (False, item.item.id, item.rev)
    other = await shopper.add_item(wid, "BOOK-1")

    moved = await shopper.move_to_cart(wid, item.item.id, qty=2)
    assert (moved.line.sku, moved.line.qty, moved.line.attrs) == ("LEGO-1", 2, {"set": "castle"})
    gone = await shopper.remove_item(wid, other.item.id)
    assert gone.removed == other.item.id
    assert (await shopper.get_wishlist(wid)).wishlist.items == []

    kept = await shopper.add_line("SOCKS-1", attrs={"colour": "red"})
    saved = await shopper.save_for_later(kept.line.id)
    assert saved.wishlist_id == "saved"
    assert (saved.item.sku, saved.item.attrs) == ("SOCKS-1", {"colour": "red"})
    assert [x.id for x in (await shopper.get_cart()).lines] == [moved.line.id]

    deleted = await shopper.delete_wishlist(wid)
    assert deleted.removed == wid
    listed = await shopper.list_wishlists()
    assert [w.id for w in listed.wishlists] == ["default", "saved"]
    assert listed.rev == deleted.rev


async def test_export_and_erase(shopper: CartsyncClient, customer_id: str) -> None:
    await shopper.add_line("PEN-1", qty=3)
    await shopper.add_item("default", "PAD-1")
    export = await shopper.export()
    assert export.owner == f"c:{customer_id}"
    assert [(x.sku, x.qty) for x in export.cart.lines] == [("PEN-1", 3)]
    assert [i.sku for i in export.wishlists[0].items] == ["PAD-1"]
    assert [e.type for e in export.events] == ["line.added", "wishlist.item_added"]

    assert (await shopper.erase()).erased
    cart = await shopper.get_cart()
    assert (cart.rev, cart.lines) == (0, [])


async def test_guest_token_and_merge(service: ServiceProcess, shopper: CartsyncClient) -> None:
    guest = await guest_token(service.url)
    assert guest.token
    assert guest.guest_id
    async with CartsyncClient(service.url, guest.token, backoff=FAST) as device:
        await device.add_line("TSHIRT-1", qty=1, attrs={"size": "L"})
        await device.add_item("default", "CAP-1")
    await shopper.add_line("TSHIRT-1", qty=2, attrs={"size": "L"})

    merged = await shopper.merge(guest.token, strategy="sum")
    assert not merged.already_merged
    assert [(x.sku, x.qty) for x in merged.cart.lines] == [("TSHIRT-1", 3)]
    assert [i.sku for i in merged.wishlists[0].items] == ["CAP-1"]
    assert merged.rev == (await shopper.get_cart()).rev

    repeat = await shopper.merge(guest.token)
    assert repeat.already_merged
    assert [(x.sku, x.qty) for x in repeat.cart.lines] == [("TSHIRT-1", 3)]


async def test_service_token_targets_one_customer(
    service: ServiceProcess, tokens: Tokens, shopper: CartsyncClient, customer_id: str
) -> None:
    await shopper.add_line("BOOK-1", qty=1)
    service_token = tokens.token("service", "checkout-svc")
    async with CartsyncClient(service.url, service_token, backoff=FAST) as backend:
        view = backend.service_for(customer_id)
        added = await view.add_line("BOOK-2", qty=2)
        assert added.line.updated_by.role == "service"
        seen = [x.sku for x in (await view.get_cart()).lines]
        assert seen == ["BOOK-1", "BOOK-2"]
    # The view shared the backend's pool and did not close it twice; a direct one works too.
    async with CartsyncClient(
        service.url, service_token, customer=customer_id, backoff=FAST
    ) as direct:
        assert [x.sku for x in (await direct.get_cart()).lines] == ["BOOK-1", "BOOK-2"]
    assert [x.sku for x in (await shopper.get_cart()).lines] == ["BOOK-1", "BOOK-2"]


async def test_if_match_and_idempotency_key(shopper: CartsyncClient) -> None:
    first = await shopper.add_line("CAP-1", if_match=0)
    key = f"k-{uuid.uuid4().hex}"
    once = await shopper.add_line("CAP-1", qty=2, if_match=first.rev, idempotency_key=key)
    twice = await shopper.add_line("CAP-1", qty=2, if_match=first.rev, idempotency_key=key)
    assert once == twice  # the service replayed the first answer
    cart = await shopper.get_cart()
    assert [(x.sku, x.qty) for x in cart.lines] == [("CAP-1", 3)]
    assert cart.rev == 2
    assert isinstance(cart.lines[0], Line)
