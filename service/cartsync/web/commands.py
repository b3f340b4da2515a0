"""Every change an owner can make, once: served over REST and as websocket ``op`` messages.

A command names its REST route and turns a decoded body and path parameters into a store
operation. Both transports fingerprint a command the same way, so an ``op`` sent over a
websocket and retried over REST with the same key is applied once. Commands that put a line in
the cart are priced (``domain.pricing``) before their one script runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from cartsync import wire
from cartsync.domain.events import SYSTEM_WISHLISTS
from cartsync.domain.merge import wishlist_name_key
from cartsync.domain.model import attrs_key, line_key
from cartsync.domain.pickup import Stores, chosen_json
from cartsync.domain.pricing import Asked, Pricing
from cartsync.domain.principal import Owner, Role
from cartsync.errors import InvalidInput
from cartsync.storage.store import CartStore
from cartsync.web import support

Payload = dict[str, Any]
Params = Mapping[str, str]


def _present(**fields: Any) -> Payload:
    """Payload for a script: absent optional fields stay absent (Lua has no null)."""
    return {k: v for k, v in fields.items() if v is not None and v is not msgspec.UNSET}


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the answer names what the ``target`` operation takes next.

    ``params`` maps the target's path parameters to runtime expressions such as
    ``$response.body#/line/id``; the owner prefix (``customer_id``, ``grant_id``) is passed on.
    """

    target: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class Pricer:
    """What pricing a line needs besides the body: who asks, whose cart, and the catalogue;
    and the click-and-collect stores, whose rules a pick-up choice is checked against."""

    role: Role
    owner: Owner
    pricing: Pricing
    store: CartStore
    stores: Stores = field(default_factory=Stores)


@dataclass(frozen=True)
class Command:
    name: str
    method: str
    path: str
    op: str
    build: Callable[[Any, Params], Payload]
    summary: str
    response: type[Any]
    body: type[Any] | None = None
    status: int = 200
    also: Mapping[int, str] = field(default_factory=dict)
    """Other success statuses and when they are answered."""
    example: Mapping[str, Any] | None = None
    """A request body the service accepts (OpenAPI example; a test sends each one)."""
    links: tuple[Link, ...] = ()
    reserved: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Path parameter values this command refuses (422) whatever the state."""
    price: Callable[[Any, Params, Pricer], Awaitable[Payload]] | None = None
    """Fields added to the payload after asking the catalogue (title, unit_price, ...) or
    checking the stores' rules (a pick-up choice)."""

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))

    async def payload(self, body: Any, params: Params, pricer: Pricer) -> Payload:
        """The script's payload; any catalogue lookup happens here, before the script."""
        payload = self.build(body, params)
        if self.price is not None:
            payload.update(await self.price(body, params, pricer))
        return payload


def _add_line(b: wire.AddLine, p: Params) -> Payload:
    return _present(sku=b.sku, qty=b.qty, attrs=b.attrs, key=line_key(b.sku, b.attrs))


async def _price_line(b: wire.AddLine, p: Params, pricer: Pricer) -> Payload:
    (fields,) = await pricer.pricing.price(pricer.role, [Asked(b.sku, b.title, b.unit_price)])
    return fields


async def _price_move(b: wire.MoveToCart, p: Params, pricer: Pricer) -> Payload:
    """Without a catalogue the script copies the item's title; with one, the item's sku is read
    first (the script checks it is still that sku) and priced like an added line."""
    if pricer.pricing.catalog is None:
        return {}
    snap = await pricer.store.snapshot(pricer.owner, "wishlists")
    for w in snap.wishlists:
        if w.id == p["wishlist_id"]:
            for item in w.items:
                if item.id == p["item_id"]:
                    (fields,) = await pricer.pricing.price(pricer.role, [Asked(item.sku)])
                    return {"sku": item.sku, **fields}
    return {}  # the script answers wishlist_not_found or item_not_found


def _patch_line(b: wire.PatchLine, p: Params) -> Payload:
    if b.qty is msgspec.UNSET and b.qty_delta is msgspec.UNSET and b.attrs is msgspec.UNSET:
        raise InvalidInput("send qty, attrs or both", code="invalid_field", field="qty")
    if b.qty is not msgspec.UNSET and b.qty_delta is not msgspec.UNSET:
        raise InvalidInput(
            "send qty or qty_delta, not both", code="invalid_field", field="qty_delta"
        )
    payload = _present(line_id=p["line_id"], qty=b.qty, qty_delta=b.qty_delta)
    if not isinstance(b.attrs, msgspec.UnsetType):
        # Only the script knows the line's sku; it prefixes it to make the line key.
        payload["attrs"] = b.attrs
        payload["attrs_key"] = attrs_key(b.attrs)
    return payload


def _named(b: wire.CreateWishlist | wire.PatchWishlist, p: Params) -> Payload:
    name = b.name.strip()
    return {**p, "name": name, "name_key": wishlist_name_key(name)}


def _add_item(b: wire.AddWishItem, p: Params) -> Payload:
    return _present(
        wishlist_id=p["wishlist_id"],
        sku=b.sku,
        attrs=b.attrs,
        key=line_key(b.sku, b.attrs),
        title=b.title,
        note=b.note,
    )


def _collection(b: wire.SetCollection, p: Params) -> Payload:
    """``ready`` as sent; the store and time are checked by ``_choose_pickup``."""
    if b.ready is msgspec.UNSET and b.store_id is msgspec.UNSET and b.pickup_at is msgspec.UNSET:
        raise InvalidInput(
            "send ready, store_id with pickup_at, or all three", code="invalid_field", field="ready"
        )
    return _present(ready=b.ready)


async def _choose_pickup(b: wire.SetCollection, p: Params, pricer: Pricer) -> Payload:
    """The choice as the script stores it ('' clears it); nothing when only ``ready`` is sent.
    Checked here against the stores' rules; a time already too close is refused by the script
    (``late``) after its idempotent replay, so a retried accepted choice answers as it did."""
    if b.store_id is msgspec.UNSET and b.pickup_at is msgspec.UNSET:
        return {}
    if b.store_id is None:
        if b.pickup_at not in (None, msgspec.UNSET):
            raise InvalidInput(
                "clear the choice with store_id and pickup_at both null",
                code="invalid_pickup",
                field="pickup_at",
            )
        return {"pickup": ""}
    if isinstance(b.store_id, msgspec.UnsetType):
        raise InvalidInput("pickup_at needs a store_id", code="invalid_pickup", field="store_id")
    if not isinstance(b.pickup_at, str):
        raise InvalidInput("store_id needs a pickup_at", code="invalid_pickup", field="pickup_at")
    store, at, late = pricer.stores.choose(b.store_id, b.pickup_at, datetime.now(UTC))
    chosen: Payload = {"pickup": chosen_json(store, at)}
    if late is not None:
        chosen["late"] = late
    return chosen


def _params_only(b: None, p: Params) -> Payload:
    return dict(p)


COMMANDS: tuple[Command, ...] = (
    Command(
        "add_line",
        "POST",
        "/cart/lines",
        "line_add",
        _add_line,
        "Add a line, or add to the line with the same sku and attrs",
        wire.LineResult,
        wire.AddLine,
        201,
        also={200: "Added to the existing line with the same sku and attrs"},
        example={"sku": "TSHIRT-1", "qty": 2, "attrs": {"size": "M"}, "unit_price": "19.90"},
        price=_price_line,
        links=(
            Link("patch_line", {"line_id": "$response.body#/line/id"}),
            Link("remove_line", {"line_id": "$response.body#/line/id"}),
            Link("save_for_later", {"line_id": "$response.body#/line/id"}),
        ),
    ),
    Command(
        "patch_line",
        "PATCH",
        "/cart/lines/{line_id}",
        "line_update",
        _patch_line,
        "Change a line's quantity (qty, or qty_delta added to it) or attrs (qty 0 removes it)",
        wire.PatchLineResult,
        wire.PatchLine,
        example={"qty": 3},
    ),
    Command(
        "remove_line",
        "DELETE",
        "/cart/lines/{line_id}",
        "line_remove",
        _params_only,
        "Remove a line",
        wire.Removed,
    ),
    Command(
        "clear_cart",
        "DELETE",
        "/cart",
        "cart_clear",
        _params_only,
        "Remove every line",
        wire.RevOnly,
    ),
    Command(
        "set_note",
        "PUT",
        "/cart/note",
        "note_set",
        lambda b, p: {"note": b.note},
        "Set the cart's note",
        wire.NoteResult,
        wire.SetNote,
        example={"note": "Gift wrap, please"},
    ),
    Command(
        "set_collection",
        "PUT",
        "/cart/collection",
        "collection_set",
        _collection,
        "Click-and-collect: choose (or clear) the store and pick-up time, mark the order ready",
        wire.CollectionResult,
        wire.SetCollection,
        example={"ready": True},
        price=_choose_pickup,
    ),
    Command(
        "save_for_later",
        "POST",
        "/cart/lines/{line_id}/save-for-later",
        "line_save_for_later",
        _params_only,
        "Move a line to the 'saved' wishlist",
        wire.SavedForLater,
    ),
    Command(
        "checkout",
        "POST",
        "/cart/checkout",
        "checkout",
        _params_only,
        "Freeze the cart: return its final snapshot and start a new empty cart",
        wire.CheckoutResult,
    ),
    Command(
        "create_wishlist",
        "POST",
        "/wishlists",
        "wishlist_create",
        _named,
        "Create a named wishlist",
        wire.WishlistResult,
        wire.CreateWishlist,
        201,
        example={"name": "Birthday"},
        links=(
            Link("add_item", {"wishlist_id": "$response.body#/wishlist/id"}),
            Link("rename_wishlist", {"wishlist_id": "$response.body#/wishlist/id"}),
            Link("delete_wishlist", {"wishlist_id": "$response.body#/wishlist/id"}),
        ),
    ),
    Command(
        "rename_wishlist",
        "PATCH",
        "/wishlists/{wishlist_id}",
        "wishlist_rename",
        _named,
        "Rename a wishlist",
        wire.WishlistResult,
        wire.PatchWishlist,
        example={"name": "Christmas"},
        reserved={"wishlist_id": SYSTEM_WISHLISTS},
    ),
    Command(
        "delete_wishlist",
        "DELETE",
        "/wishlists/{wishlist_id}",
        "wishlist_delete",
        _params_only,
        "Delete a wishlist and its items",
        wire.Removed,
        reserved={"wishlist_id": SYSTEM_WISHLISTS},
    ),
    Command(
        "add_item",
        "POST",
        "/wishlists/{wishlist_id}/items",
        "item_add",
        _add_item,
        "Add an item (an existing sku+attrs is returned unchanged, 200)",
        wire.WishItemResult,
        wire.AddWishItem,
        201,
        also={200: "The wishlist already holds this sku and attrs: that item, unchanged"},
        example={"sku": "MUG-7", "attrs": {"colour": "blue"}, "note": "the big one"},
        links=(
            Link(
                "remove_item",
                {"wishlist_id": "$request.path.wishlist_id", "item_id": "$response.body#/item/id"},
            ),
            Link(
                "move_to_cart",
                {"wishlist_id": "$request.path.wishlist_id", "item_id": "$response.body#/item/id"},
            ),
        ),
    ),
    Command(
        "remove_item",
        "DELETE",
        "/wishlists/{wishlist_id}/items/{item_id}",
        "item_remove",
        _params_only,
        "Remove an item",
        wire.Removed,
    ),
    Command(
        "move_to_cart",
        "POST",
        "/wishlists/{wishlist_id}/items/{item_id}/move-to-cart",
        "item_move_to_cart",
        lambda b, p: {**p, "qty": b.qty},
        "Move an item into the cart",
        wire.LineResult,
        wire.MoveToCart,
        example={"qty": 1},
        price=_price_move,
    ),
    Command(
        support.RESTORE,
        "POST",
        "/cart/restore",
        "cart_restore",
        support.restore_body,
        "Support: put the cart (and, asked, the wishlists) back as they were at revision `rev`, "
        "as one new change (`cart.restored`); support tokens only, at /v1/customers/{id}",
        wire.RestoreResult,
        wire.RestoreCart,
        example={"rev": 3, "reason": "customer called: cart emptied by mistake"},
        price=support.plan_restore,
    ),
)

BY_NAME: Mapping[str, Command] = {c.name: c for c in COMMANDS}

_canonical = msgspec.json.Encoder(order="sorted")


def fingerprint(method: str, path: str, params: Params, body: object) -> str:
    """What makes two requests 'the same' for an Idempotency-Key, whatever the transport."""
    h = hashlib.sha256()
    h.update(f"{method} {path} {sorted(params.items())}\n".encode())
    if body is not None:
        h.update(_canonical.encode(msgspec.to_builtins(body)))
    return h.hexdigest()
