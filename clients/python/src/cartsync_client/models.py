"""What the service sends, as the client's own msgspec Structs.

These mirror the service's wire types field for field but are declared here, so the client needs
nothing from the service package. Unknown fields are ignored when decoding (msgspec's default),
so a newer service that adds a field does not break an older client.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "Ack",
    "Actor",
    "Cart",
    "Checkout",
    "CheckoutResult",
    "Collection",
    "CollectionResult",
    "Erased",
    "Event",
    "Export",
    "Grant",
    "GrantResult",
    "Grants",
    "GuestToken",
    "Handoff",
    "History",
    "Line",
    "LineResult",
    "MergeResult",
    "NoteResult",
    "PatchLineResult",
    "PickupStore",
    "Removed",
    "RevOnly",
    "SavedForLater",
    "Snapshot",
    "Update",
    "WishItem",
    "WishItemResult",
    "Wishlist",
    "WishlistResult",
    "Wishlists",
]

Attrs = dict[str, str]


class Actor(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who made a change: role, subject, the device (``X-Device-Id``) when it said, and for
    store staff (through a grant) their store."""

    role: str
    id: str
    device: str | None = None
    store: str | None = None


class Line(msgspec.Struct, omit_defaults=True):
    """One cart line; same sku and attrs is the same line."""

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
    """The unit price's currency (absent on lines stored before lines recorded one)."""
    image: str | None = None
    priced: bool | None = None
    """Whether the line has a unit price (false: the shop's catalogue could not be asked)."""
    priced_by: str | None = None
    """Who set title and price: ``catalog``, ``staff``, ``service`` or ``client``."""


class Collection(msgspec.Struct):
    """Click-and-collect: the store and pick-up time chosen (None: none; the time in the
    store's local time, ISO 8601 with its offset) and whether staff have the order ready."""

    store_id: str | None = None
    store_name: str | None = None
    pickup_at: str | None = None
    ready: bool = False


class Cart(msgspec.Struct):
    """The active cart at revision ``rev`` (lines ordered as they were first added)."""

    owner: str
    rev: int
    cart_id: str | None
    currency: str
    lines: list[Line]
    note: str
    updated_at: str | None
    ready_for_collection: bool = False
    """Marked ready for click-and-collect (``PUT /v1/cart/collection``); checkout clears it.
    The same as ``collection.ready``."""
    epoch: str | None = None
    """Names this run of revisions; it changes when the owner's data starts again."""
    subtotal: str | None = None
    """Sum of unit price x qty when every line has a price in ``currency``, as the service
    read the cart; a mirror that applies events to lines does not recompute it."""
    item_count: int | None = None
    collection: Collection = msgspec.field(default_factory=Collection)
    """The store, pick-up time and ready flag (an older service sends none: then all empty)."""


class WishItem(msgspec.Struct, omit_defaults=True):
    id: str
    sku: str
    attrs: Attrs
    added_at: str
    added_by: Actor
    title: str | None = None
    note: str | None = None


class Wishlist(msgspec.Struct, omit_defaults=True):
    """A wishlist; ``default`` and ``saved`` exist for every owner, the rest are named by them."""

    id: str
    name: str
    items: list[WishItem]
    created_at: str | None = None
    updated_at: str | None = None


class Event(msgspec.Struct):
    """One change of one owner, numbered by the owner's revision; ``data`` depends on ``type``."""

    rev: int
    type: str
    data: dict[str, Any]
    actor: Actor
    at: str
    epoch: str | None = None


class Snapshot(msgspec.Struct):
    """The whole state at ``rev``: sent first, and whenever the event log cannot fill a gap."""

    rev: int
    cart: Cart
    wishlists: list[Wishlist]


Update = Snapshot | Event
"""What a live subscription yields, in revision order."""


class Ack(msgspec.Struct):
    """A websocket op that was applied (or replayed: ``replayed``); ``result`` is the REST body."""

    id: str
    rev: int
    status: int
    result: dict[str, Any]
    replayed: bool = False


# REST response bodies ---------------------------------------------------------------------


class LineResult(msgspec.Struct):
    rev: int
    line: Line


class PatchLineResult(msgspec.Struct):
    """``line`` after a change, or ``removed`` (the line id) when qty 0 removed it."""

    rev: int
    line: Line | None = None
    removed: str | None = None


class Removed(msgspec.Struct):
    rev: int
    removed: str


class RevOnly(msgspec.Struct):
    rev: int


class NoteResult(msgspec.Struct):
    rev: int
    note: str


class SavedForLater(msgspec.Struct):
    rev: int
    wishlist_id: str
    item: WishItem


class Checkout(msgspec.Struct):
    """The frozen cart handed to the order system."""

    cart_id: str
    owner: str
    currency: str
    note: str
    checked_out_at: str
    lines: list[Line]
    collection: Collection | None = None
    """The click-and-collect choice as it was (checkout clears it from the cart)."""


class CheckoutResult(msgspec.Struct):
    """The frozen cart, and ``cart_id`` of the new empty cart that replaced it."""

    rev: int
    checkout: Checkout
    cart_id: str


class MergeResult(msgspec.Struct):
    rev: int
    cart: Cart
    wishlists: list[Wishlist]
    already_merged: bool
    dropped_lines: int = 0
    capped_lines: int = 0
    dropped_items: int = 0


class Wishlists(msgspec.Struct):
    rev: int
    wishlists: list[Wishlist]


class WishlistResult(msgspec.Struct):
    rev: int
    wishlist: Wishlist


class WishItemResult(msgspec.Struct):
    """``created`` is False when the sku and attrs were already on the list (nothing changed)."""

    rev: int
    item: WishItem
    created: bool


class History(msgspec.Struct):
    """Events after ``since``; ``complete`` False means the log no longer reaches back: reload."""

    rev: int
    since: int
    complete: bool
    events: list[Event]
    epoch: str | None = None


class GuestToken(msgspec.Struct):
    token: str
    guest_id: str
    expires_at: str


class Export(msgspec.Struct):
    owner: str
    exported_at: str
    cart: Cart
    wishlists: list[Wishlist]
    events: list[Event]


class Erased(msgspec.Struct):
    erased: bool


class CollectionResult(msgspec.Struct):
    rev: int
    ready: bool
    collection: Collection = msgspec.field(default_factory=Collection)


class PickupStore(msgspec.Struct):
    """A store that takes click-and-collect orders (``GET /v1/stores``) and its next slots."""

    id: str
    name: str
    address: str
    timezone: str
    """IANA timezone: ``hours`` and ``next_slots`` are in this local time."""
    hours: dict[str, dict[str, str]]
    slot_minutes: int
    lead_minutes: int
    days_ahead: int
    next_slots: list[str]


class _PickupStores(msgspec.Struct):
    stores: list[PickupStore]


class Handoff(msgspec.Struct):
    """A one-time code the customer shows store staff (digits, and the same as a QR SVG)."""

    code: str
    expires_at: str
    qr_svg: str


class Grant(msgspec.Struct, frozen=True):
    """Access to ``owner``'s cart for one staff member at one store, until ``expires_at``."""

    id: str
    owner: str
    staff: str
    store: str
    created_at: str
    expires_at: str


class GrantResult(msgspec.Struct):
    grant: Grant


class Grants(msgspec.Struct):
    grants: list[Grant]
