"""The event catalogue: the envelope of every event and, per type, the shape of its ``data``.

``storage/lua/mutate/`` writes these (and publishes ``owner.erased``); the names come from
``domain/events.py``. ``tests/test_event_catalogue.py`` drives every type through a real service
and decodes each event it sees strictly with these types, so the catalogue cannot drift from
the scripts. The AsyncAPI document (``web/asyncapi.py``), docs/api.md and the clients follow it.

The types forbid unknown fields because they describe exactly what this server sends; clients
must still ignore fields they do not know (a newer server may add some within version 1).
"""

from __future__ import annotations

from typing import Final

from msgspec import Raw, Struct

from cartsync.domain import events
from cartsync.domain.consent import Grant
from cartsync.domain.model import Actor, Line, WishItem, Wishlist
from cartsync.wire import Checkout, MergeStrategyName


class EventData(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of the ``data`` of one event type."""


class LineChanged(EventData):
    """``line.added``, ``line.updated``: the line as it is now."""

    line: Line


class LineRemoved(EventData):
    line_id: str


class LineSavedForLater(EventData):
    """The line left the cart; ``item`` is its entry on the ``saved`` wishlist."""

    line_id: str
    wishlist_id: str
    item: WishItem


class CartCleared(EventData):
    pass


class CartNoteSet(EventData):
    note: str


class CartCheckedOut(EventData):
    """``checkout`` is the frozen cart; ``cart_id`` the id of the new, empty one."""

    checkout: Checkout
    cart_id: str


class CartMerged(EventData):
    """The guest's owner id, and the customer's whole cart lines and wishlists after it."""

    guest: str
    strategy: MergeStrategyName
    lines: list[Line]
    wishlists: list[Wishlist]


class CartRestored(EventData):
    """Support's restore to ``restored_rev`` (why: ``reason``): the whole cart lines, note and
    wishlists after it, like a snapshot; the wishlists are unchanged unless
    ``wishlists_restored``."""

    restored_rev: int
    reason: str
    wishlists_restored: bool
    note: str
    lines: list[Line]
    wishlists: list[Wishlist]


class CartCollectionSet(EventData):
    """The whole click-and-collect state after the change: the chosen store (its name as it
    was) and local pick-up time, null when none is chosen, and whether the order is ready."""

    store_id: str | None
    store_name: str | None
    pickup_at: str | None
    ready: bool


class GrantStarted(EventData):
    grant: Grant


class GrantRevoked(EventData):
    grant_id: str


class OwnerErased(EventData):
    """Published only (the log is erased too), with ``rev`` 0 and an empty ``epoch``."""


class WishlistChanged(EventData):
    """``wishlist.created``, ``wishlist.renamed``: the wishlist with its items."""

    wishlist: Wishlist


class WishlistDeleted(EventData):
    wishlist_id: str


class WishItemAdded(EventData):
    wishlist_id: str
    item: WishItem


class WishItemRemoved(EventData):
    wishlist_id: str
    item_id: str


class WishItemMovedToCart(EventData):
    """``line`` is the cart line the item went to (new, or an existing one grown)."""

    wishlist_id: str
    item_id: str
    line: Line


EVENT_DATA: Final[dict[str, type[EventData]]] = {
    events.LINE_ADDED: LineChanged,
    events.LINE_UPDATED: LineChanged,
    events.LINE_REMOVED: LineRemoved,
    events.LINE_SAVED_FOR_LATER: LineSavedForLater,
    events.CART_CLEARED: CartCleared,
    events.CART_NOTE_SET: CartNoteSet,
    events.CART_CHECKED_OUT: CartCheckedOut,
    events.CART_MERGED: CartMerged,
    events.CART_COLLECTION_SET: CartCollectionSet,
    events.CART_RESTORED: CartRestored,
    events.GRANT_STARTED: GrantStarted,
    events.GRANT_REVOKED: GrantRevoked,
    events.OWNER_ERASED: OwnerErased,
    events.WISHLIST_CREATED: WishlistChanged,
    events.WISHLIST_RENAMED: WishlistChanged,
    events.WISHLIST_DELETED: WishlistDeleted,
    events.WISHLIST_ITEM_ADDED: WishItemAdded,
    events.WISHLIST_ITEM_REMOVED: WishItemRemoved,
    events.WISHLIST_ITEM_MOVED_TO_CART: WishItemMovedToCart,
}
"""Event type -> the type of its ``data``; its keys are exactly ``domain.events.ALL``."""


class EventEnvelope(Struct, forbid_unknown_fields=True, kw_only=True):
    """One event as logged and published: the revision it made, its type and data, who made
    it and when (UTC, milliseconds), and the epoch its revision counts in."""

    rev: int
    type: str
    data: Raw
    actor: Actor
    at: str
    epoch: str


class EventFrame(Struct, tag_field="type", tag="event", forbid_unknown_fields=True):
    """Server frame carrying one event; the event's JSON is passed through as logged."""

    event: EventEnvelope
