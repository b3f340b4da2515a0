"""The values a cart and its wishlists are made of, as stored and as sent to clients."""

from __future__ import annotations

import msgspec

Attrs = dict[str, str]


class Actor(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who made a change: role and subject, and the device when it said."""

    role: str
    id: str
    device: str | None = None
    store: str | None = None


class Line(msgspec.Struct, omit_defaults=True):
    id: str
    sku: str
    qty: int
    attrs: Attrs
    added_at: str
    updated_at: str
    updated_by: Actor
    title: str | None = None
    unit_price: str | None = None
    currency: str | None = None
    """The unit price's currency (lines stored before it was recorded: the cart's)."""
    image: str | None = None
    priced: bool | None = None
    """Whether the line has a unit price; false when the catalogue could not be asked."""
    priced_by: str | None = None
    """Who set the title and unit price: catalog, staff, service, or client (the shop must
    re-price client-priced lines at checkout)."""


class Collection(msgspec.Struct):
    """Click-and-collect: the store and local pick-up time chosen (null: none), and whether
    staff have the order ready. Checkout clears it."""

    store_id: str | None = None
    store_name: str | None = None
    pickup_at: str | None = None
    """ISO 8601 in the store's local time, with its offset."""
    ready: bool = False


class Cart(msgspec.Struct):
    owner: str
    rev: int
    cart_id: str | None
    currency: str
    lines: list[Line]
    note: str
    updated_at: str | None
    ready_for_collection: bool = False
    """Kept for older clients: the same as ``collection.ready``."""
    epoch: str | None = None
    """Changes when the owner's data restarts from nothing; revisions compare within one epoch."""
    subtotal: str | None = None
    """Sum of unit price x qty, when every line has a price in ``currency``; else null."""
    item_count: int | None = None
    """Units in the cart, next to ``subtotal`` (null when it is)."""
    collection: Collection = msgspec.field(default_factory=Collection)


class WishItem(msgspec.Struct, omit_defaults=True):
    id: str
    sku: str
    attrs: Attrs
    added_at: str
    added_by: Actor
    title: str | None = None
    note: str | None = None


class Wishlist(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    items: list[WishItem]
    created_at: str | None = None
    updated_at: str | None = None


class Event(msgspec.Struct):
    """One change of one owner, numbered by the owner's revision."""

    rev: int
    type: str
    data: msgspec.Raw
    actor: Actor
    at: str
    epoch: str | None = None


_canonical = msgspec.json.Encoder(order="sorted")


def attrs_key(attrs: Attrs) -> str:
    """The attrs part of a line key: canonical JSON, so key order never makes a new line."""
    return "\n" + _canonical.encode(attrs).decode()


def line_key(sku: str, attrs: Attrs) -> str:
    """Identity of a line or wishlist item: same sku and attrs means the same thing."""
    return sku + attrs_key(attrs)


def item_order(item_id: str) -> int:
    """Ids are a prefix letter and a per-owner sequence number; order by the number."""
    digits = item_id[1:]
    return int(digits) if digits.isdigit() else -1
