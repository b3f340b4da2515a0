"""CartMirror: after any sequence of changes it holds what GET /v1/cart and /v1/wishlists say."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import httpx
import pytest
from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

from cartsync_client import (
    Actor,
    CartMirror,
    CartsyncClient,
    CartsyncError,
    Event,
    MirrorError,
    Snapshot,
    guest_token,
)
from client_testkit import FAST, follow

SKUS = ("CAP-1", "MUG-1", "TEE-1", "BOOK-1")
ATTRS: tuple[dict[str, str], ...] = ({}, {"size": "S"}, {"size": "L"})
NAMES = ("Birthday", "Garden", "Kitchen", "birthday")


class Shopper:
    """Random changes through REST (device A) and websocket ops (device B), all owner-valid."""

    def __init__(self, url: str, a: CartsyncClient, send_op: Callable[..., Awaitable[object]]):
        self.url = url
        self.a = a
        self.send_op = send_op

    async def step(self, rnd: random.Random) -> None:
        cart = await self.a.get_cart()
        lists = (await self.a.list_wishlists()).wishlists
        line_ids = [x.id for x in cart.lines] or ["L0"]
        items = [(w.id, i.id) for w in lists for i in w.items] or [("default", "i0")]
        named = [w.id for w in lists if w.id not in ("default", "saved")] or ["w0"]
        all_lists = [w.id for w in lists] + ["saved"]
        a = self.a
        choice = rnd.choices(
            [
                "add",
                "add_ws",
                "patch",
                "remove",
                "note",
                "note_ws",
                "save",
                "create",
                "rename",
                "delete",
                "item",
                "unitem",
                "move",
                "clear",
                "checkout",
                "merge",
            ],
            weights=[8, 3, 5, 2, 1, 1, 2, 2, 1, 1, 4, 2, 2, 0.5, 0.5, 0.5],
        )[0]
        try:
            if choice == "add":
                await a.add_line(
                    rnd.choice(SKUS), qty=rnd.randint(1, 3), attrs=dict(rnd.choice(ATTRS))
                )
            elif choice == "add_ws":
                body = {"sku": rnd.choice(SKUS), "qty": rnd.randint(1, 3)}
                await self.send_op("add_line", {}, body)
            elif choice == "patch":
                if rnd.random() < 0.7:
                    await a.patch_line(rnd.choice(line_ids), qty=rnd.randint(0, 4))
                else:
                    await a.patch_line(rnd.choice(line_ids), attrs=dict(rnd.choice(ATTRS)))
            elif choice == "remove":
                await a.remove_line(rnd.choice(line_ids))
            elif choice == "note":
                await a.set_note(f"note {rnd.randint(0, 99)}")
            elif choice == "note_ws":
                await self.send_op("set_note", {}, {"note": f"ws {rnd.randint(0, 99)}"})
            elif choice == "save":
                await a.save_for_later(rnd.choice(line_ids))
            elif choice == "create":
                await a.create_wishlist(rnd.choice(NAMES))
            elif choice == "rename":
                await a.rename_wishlist(
                    rnd.choice(named), f"{rnd.choice(NAMES)} {rnd.randint(0, 9)}"
                )
            elif choice == "delete":
                await a.delete_wishlist(rnd.choice(named))
            elif choice == "item":
                await a.add_item(
                    rnd.choice(all_lists), rnd.choice(SKUS), attrs=dict(rnd.choice(ATTRS))
                )
            elif choice == "unitem":
                await a.remove_item(*rnd.choice(items))
            elif choice == "move":
                wid, iid = rnd.choice(items)
                await a.move_to_cart(wid, iid, qty=rnd.randint(1, 2))
            elif choice == "clear":
                await a.clear_cart()
            elif choice == "checkout":
                await a.checkout()
            elif choice == "merge":
                await self.merge_a_guest(rnd)
        except CartsyncError as refused:
            # Random choices are often refused (a taken name, a stale id); that changes nothing.
            if refused.status not in (404, 409, 412, 422):
                raise

    async def merge_a_guest(self, rnd: random.Random) -> None:
        guest = await guest_token(self.url, backoff=FAST)
        async with CartsyncClient(self.url, guest.token, backoff=FAST) as g:
            await g.add_line(rnd.choice(SKUS), qty=rnd.randint(1, 3))
            await g.add_item("default", rnd.choice(SKUS))
            if rnd.random() < 0.5:
                await g.create_wishlist(rnd.choice(NAMES))
        strategy = rnd.choice(["sum", "max", "replace", "keep"])
        await self.a.merge(guest.token, strategy=strategy)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_mirror_equals_the_service_after_random_changes(
    service: ServiceProcess, tokens: Tokens, customer_id: str, seed: int
) -> None:
    rnd = random.Random(seed)
    token = tokens.token("customer", customer_id)
    async with (
        CartsyncClient(service.url, token, device_id="phone", backoff=FAST) as a,
        CartsyncClient(service.url, token, device_id="laptop", backoff=FAST) as b,
        b.subscribe(backoff=FAST) as live,
    ):
        mirror = CartMirror()
        first = await asyncio.wait_for(anext(live), 10)
        assert isinstance(first, Snapshot)
        mirror.apply(first)

        async def send_op(name: str, params: dict[str, str], body: dict[str, object]) -> None:
            await asyncio.wait_for(live.send_op(name, params, body), 10)

        shopper = Shopper(service.url, a, send_op)
        for _ in range(60):
            await shopper.step(rnd)
            if rnd.random() < 0.2:  # sometimes catch up mid-way, sometimes let updates queue
                await follow(live, mirror, (await a.get_cart()).rev)
        cart = await a.get_cart()
        await follow(live, mirror, cart.rev)
        wishlists = (await a.list_wishlists()).wishlists

        # A second device replaying the whole log from revision 0 gets the same state.
        async with b.subscribe(since=0, backoff=FAST) as replay:
            replayed = CartMirror()
            await follow(replay, replayed, cart.rev)
    assert cart.rev > 30
    assert (mirror.rev, mirror.lines, mirror.note) == (cart.rev, cart.lines, cart.note)
    assert mirror.wishlists == wishlists
    assert mirror.agrees_with(cart, wishlists)
    assert replayed.agrees_with(cart, wishlists)


EVERY_EVENT_TYPE = {
    "line.added",
    "line.updated",
    "line.removed",
    "line.saved_for_later",
    "cart.cleared",
    "cart.note_set",
    "cart.checked_out",
    "cart.merged",
    "cart.restored",
    "wishlist.created",
    "wishlist.renamed",
    "wishlist.deleted",
    "wishlist.item_added",
    "wishlist.item_removed",
    "wishlist.item_moved_to_cart",
}


async def test_mirror_applies_every_event_type(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        CartsyncClient(service.url, token, device_id="phone", backoff=FAST) as a,
        a.subscribe(since=0, backoff=FAST) as live,
    ):
        mirror = CartMirror()
        checks: list[tuple[str, bool]] = []

        async def check(label: str) -> None:
            cart = await a.get_cart()
            await follow(live, mirror, cart.rev)
            checks.append((label, mirror.agrees_with(cart, (await a.list_wishlists()).wishlists)))

        tee = (await a.add_line("TEE-1", attrs={"size": "M"}, unit_price="9.5")).line
        await a.add_line("TEE-1", attrs={"size": "M"})
        await a.patch_line(tee.id, attrs={"size": "L"})
        await a.set_note("gift")
        await check("lines and note")
        await a.save_for_later(tee.id)  # creates the saved wishlist
        await a.add_line("TEE-1", attrs={"size": "L"})
        await a.save_for_later((await a.get_cart()).lines[0].id)  # already saved: same item
        await check("saved for later")
        item = (await a.add_item("default", "MUG-1", note="blue")).item  # stores default
        await a.move_to_cart("default", item.id, qty=2)
        gift = (await a.create_wishlist("Gifts")).wishlist
        book = (await a.add_item(gift.id, "BOOK-1")).item
        await a.add_item(gift.id, "BOOK-2")
        await a.remove_item(gift.id, book.id)
        await a.rename_wishlist(gift.id, "Presents")
        await check("wishlists")
        await a.checkout()
        cap = (await a.add_line("CAP-1")).line
        await a.add_line("PEN-1")
        await a.remove_line(cap.id)
        await a.clear_cart()
        await a.delete_wishlist(gift.id)
        await check("checkout, clear, delete")
        guest = await guest_token(service.url, backoff=FAST)
        async with CartsyncClient(service.url, guest.token, backoff=FAST) as g:
            await g.add_line("CAP-1", qty=2)
            await g.add_item("default", "PEN-1")
            await g.create_wishlist("Guest list")
        await a.add_line("CAP-1")
        await a.merge(guest.token, strategy="sum")
        await check("merge")
        # Customer service puts the cart and wishlists back as they were before the checkout.
        support = {**tokens.headers("support", "agent"), "X-Support-Reason": "mirror test"}
        restore = {"rev": 10, "reason": "the customer asked", "wishlists": True}
        async with httpx.AsyncClient(base_url=service.url, headers=support) as desk:
            r = await desk.post(f"/v1/customers/{customer_id}/cart/restore", json=restore)
            assert r.status_code == 200, r.text
        await check("restore")
        kinds = {e.type for e in (await a.history()).events}
    assert kinds == EVERY_EVENT_TYPE
    assert checks == [(label, True) for label, _ in checks]


def _event(rev: int, type_: str, data: dict[str, object]) -> Event:
    return Event(rev, type_, data, Actor("customer", "x"), "2026-01-01T00:00:00.000Z")


def test_mirror_skips_seen_revisions_and_refuses_gaps() -> None:
    mirror = CartMirror()
    assert mirror.apply(_event(1, "cart.note_set", {"note": "a"}))
    assert not mirror.apply(_event(1, "cart.note_set", {"note": "b"}))
    assert mirror.note == "a"
    with pytest.raises(MirrorError, match="revision 2 is missing"):
        mirror.apply(_event(3, "cart.note_set", {"note": "c"}))
    with pytest.raises(MirrorError, match="unknown event type"):
        mirror.apply(_event(2, "cart.teleported", {}))
    assert (mirror.rev, mirror.note) == (1, "a")
    assert [w.id for w in mirror.wishlists] == ["default"]


def test_mirror_takes_grant_events_as_revisions_and_erasure_as_a_fresh_start() -> None:
    mirror = CartMirror()
    mirror.apply(_event(1, "cart.note_set", {"note": "gift"}))
    assert mirror.apply(_event(2, "grant.started", {"grant": {"id": "g1"}}))
    assert mirror.apply(_event(3, "cart.collection_set", {"ready": True}))
    assert mirror.apply(_event(4, "grant.revoked", {"grant_id": "g1"}))
    assert (mirror.rev, mirror.note, mirror.ready_for_collection) == (4, "gift", True)
    assert mirror.apply(_event(0, "owner.erased", {}))  # published, never logged: revision 0
    assert (mirror.rev, mirror.note, mirror.ready_for_collection) == (0, "", False)
    assert [w.id for w in mirror.wishlists] == ["default"]
