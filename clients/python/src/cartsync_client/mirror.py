"""``CartMirror``: a local copy of one owner's cart and wishlists, kept current from updates.

It starts as an owner with nothing stored (revision 0), takes a ``Snapshot`` whole, and applies
each ``Event`` the way the service's mutation script changed its own state (the event's ``data``
is what that script wrote), so after revision ``n`` it holds what ``GET /v1/cart`` and
``GET /v1/wishlists`` return at ``n``. It has a handler for every type in ``EVENT_TYPES``; a
``Subscription`` never hands over a type outside it (it asks for a snapshot instead).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from cartsync_client.events import STATELESS_EVENT_TYPES
from cartsync_client.models import (
    Cart,
    Collection,
    Event,
    Line,
    Snapshot,
    Update,
    WishItem,
    Wishlist,
)

__all__ = ["CartMirror", "MirrorError"]

SYSTEM_WISHLISTS = ("default", "saved")
"""Every owner has these two; they are stored on first use, and ``default`` is listed always."""


class MirrorError(Exception):
    """An event the mirror cannot apply: a skipped revision or a type it does not know.

    The remedy is the same for both: subscribe again without ``since`` to start from a snapshot.
    """


class _LineData(msgspec.Struct):
    line: Line


class _LineId(msgspec.Struct):
    line_id: str


class _SavedForLater(msgspec.Struct):
    line_id: str
    wishlist_id: str
    item: WishItem


class _Note(msgspec.Struct):
    note: str


class _Collection(msgspec.Struct):
    ready: bool
    store_id: str | None = None
    store_name: str | None = None
    pickup_at: str | None = None


class _Merged(msgspec.Struct):
    lines: list[Line]
    wishlists: list[Wishlist]


class _WishlistData(msgspec.Struct):
    wishlist: Wishlist


class _WishlistId(msgspec.Struct):
    wishlist_id: str


class _ItemAdded(msgspec.Struct):
    wishlist_id: str
    item: WishItem


class _ItemRemoved(msgspec.Struct):
    wishlist_id: str
    item_id: str


class _ItemMoved(msgspec.Struct):
    wishlist_id: str
    item_id: str
    line: Line


def _seq(entity_id: str) -> int:
    """Ids are a letter and a per-owner sequence number; the service lists things by it."""
    digits = entity_id[1:]
    return int(digits) if digits.isdigit() else -1


def _wishlist_order(w: Wishlist) -> tuple[int, int]:
    return ({"default": 0, "saved": 1}.get(w.id, 2), _seq(w.id))


def _unstored_default() -> Wishlist:
    """The ``default`` wishlist as listed before anything was put on it (no timestamps)."""
    return Wishlist(id="default", name="default", items=[])


class CartMirror:
    """The cart lines, note and wishlists of one owner at revision ``rev``."""

    def __init__(self) -> None:
        self.rev = 0
        self.note = ""
        self.ready_for_collection = False
        self.collection = Collection()
        """The store and pick-up time chosen, and ``ready`` (the same as the flag above)."""
        self.updated_at: str | None = None
        self.cart_id: str | None = None
        """Known from a snapshot; None after a checkout, whose event does not name the new cart."""
        self._lines: dict[str, Line] = {}
        self._wishlists: dict[str, Wishlist] = {"default": _unstored_default()}
        self._handlers: dict[str, Callable[[Event], None]] = {
            "line.added": self._line_put,
            "line.updated": self._line_put,
            "line.removed": self._line_removed,
            "line.saved_for_later": self._saved_for_later,
            "cart.cleared": self._cleared,
            "cart.note_set": self._note_set,
            "cart.checked_out": self._checked_out,
            "cart.merged": self._merged,
            "cart.restored": self._restored,
            "cart.collection_set": self._collection_set,
            "owner.erased": self._erased,
            "wishlist.created": self._wishlist_put,
            "wishlist.renamed": self._wishlist_put,
            "wishlist.deleted": self._wishlist_deleted,
            "wishlist.item_added": self._item_added,
            "wishlist.item_removed": self._item_removed,
            "wishlist.item_moved_to_cart": self._item_moved,
            **dict.fromkeys(STATELESS_EVENT_TYPES, self._no_state),
        }

    @property
    def known_types(self) -> frozenset[str]:
        """The event types this mirror applies (a test holds them equal to ``EVENT_TYPES``)."""
        return frozenset(self._handlers)

    @property
    def lines(self) -> list[Line]:
        """Cart lines in the service's order (first added first)."""
        return sorted(self._lines.values(), key=lambda line: _seq(line.id))

    @property
    def wishlists(self) -> list[Wishlist]:
        """Wishlists in the service's order: default, saved, then by creation."""
        return sorted(self._wishlists.values(), key=_wishlist_order)

    def agrees_with(self, cart: Cart, wishlists: list[Wishlist] | None = None) -> bool:
        """Whether this copy equals what the service returned (wishlists too, when given)."""
        mine = (self.rev, self.lines, self.note, self.ready_for_collection, self.collection)
        theirs = (cart.rev, cart.lines, cart.note, cart.ready_for_collection, cart.collection)
        same_cart = mine == theirs
        return same_cart and (wishlists is None or self.wishlists == wishlists)

    def apply(self, update: Update) -> bool:
        """Take in one update; False when it was an event at or below ``rev`` (already seen)."""
        if isinstance(update, Snapshot):
            self._reset(update)
            return True
        if update.type == "owner.erased":
            self._erased(update)
            return True
        if update.rev <= self.rev:
            return False
        if update.rev != self.rev + 1:
            raise MirrorError(f"revision {self.rev + 1} is missing (got {update.rev})")
        handler = self._handlers.get(update.type)
        if handler is None:
            raise MirrorError(f"unknown event type {update.type!r} at revision {update.rev}")
        handler(update)
        self.rev = update.rev
        self.updated_at = update.at
        return True

    def _reset(self, snapshot: Snapshot) -> None:
        copy = msgspec.convert(msgspec.to_builtins(snapshot), Snapshot)  # never share with caller
        self.rev = copy.rev
        self.note = copy.cart.note
        self.ready_for_collection = copy.cart.ready_for_collection
        self.collection = copy.cart.collection
        self.updated_at = copy.cart.updated_at
        self.cart_id = copy.cart.cart_id
        self._lines = {line.id: line for line in copy.cart.lines}
        self._set_wishlists(copy.wishlists)

    def _set_wishlists(self, wishlists: list[Wishlist]) -> None:
        self._wishlists = {w.id: w for w in wishlists}
        self._wishlists.setdefault("default", _unstored_default())

    def _open(self, wishlist_id: str, at: str) -> Wishlist:
        """The wishlist an event changed; a system one is stored (timestamped) on first use."""
        w = self._wishlists.get(wishlist_id)
        if w is not None and (w.created_at is not None or wishlist_id not in SYSTEM_WISHLISTS):
            return w
        if wishlist_id not in SYSTEM_WISHLISTS:
            raise MirrorError(f"an event names wishlist {wishlist_id!r}, which this copy lacks")
        items = w.items if w is not None else []
        w = Wishlist(wishlist_id, wishlist_id, items, created_at=at, updated_at=at)
        self._wishlists[wishlist_id] = w
        return w

    @staticmethod
    def _put_item(w: Wishlist, item: WishItem) -> None:
        w.items = sorted([*(i for i in w.items if i.id != item.id), item], key=lambda i: _seq(i.id))

    def _drop_item(self, wishlist_id: str, item_id: str, at: str) -> None:
        w = self._open(wishlist_id, at)
        w.items = [i for i in w.items if i.id != item_id]
        w.updated_at = at

    # One handler per event type; ``data`` is decoded into the shape the script wrote. ------

    def _line_put(self, event: Event) -> None:
        line = msgspec.convert(event.data, _LineData).line
        self._lines[line.id] = line

    def _line_removed(self, event: Event) -> None:
        self._lines.pop(msgspec.convert(event.data, _LineId).line_id, None)

    def _saved_for_later(self, event: Event) -> None:
        data = msgspec.convert(event.data, _SavedForLater)
        self._lines.pop(data.line_id, None)
        w = self._open(data.wishlist_id, event.at)
        self._put_item(w, data.item)
        w.updated_at = event.at

    def _cleared(self, event: Event) -> None:
        self._lines.clear()

    def _note_set(self, event: Event) -> None:
        self.note = msgspec.convert(event.data, _Note).note

    def _checked_out(self, event: Event) -> None:
        self._lines.clear()
        self.note = ""
        self.ready_for_collection = False
        self.collection = Collection()
        self.cart_id = None

    def _collection_set(self, event: Event) -> None:
        """The event holds the whole choice after the change (an older service: only ready)."""
        got = msgspec.convert(event.data, _Collection)
        self.ready_for_collection = got.ready
        self.collection = Collection(got.store_id, got.store_name, got.pickup_at, got.ready)

    def _erased(self, event: Event) -> None:
        """Everything is gone and revisions start again from 0 (a snapshot follows live)."""
        self.rev, self.note, self.ready_for_collection = 0, "", False
        self.collection = Collection()
        self.updated_at = self.cart_id = None
        self._lines = {}
        self._set_wishlists([])

    def _no_state(self, event: Event) -> None:
        """A grant started or ended: it takes a revision and changes no line or wishlist."""

    def _merged(self, event: Event) -> None:
        data = msgspec.convert(event.data, _Merged)
        self._lines = {line.id: line for line in data.lines}
        for w in data.wishlists:
            w.items.sort(key=lambda i: _seq(i.id))
        self._set_wishlists(data.wishlists)

    def _restored(self, event: Event) -> None:
        """Support put the cart back: the whole state, like a merge, note included."""
        self._merged(event)
        self.note = msgspec.convert(event.data, _Note).note

    def _wishlist_put(self, event: Event) -> None:
        w = msgspec.convert(event.data, _WishlistData).wishlist
        w.items.sort(key=lambda i: _seq(i.id))
        self._wishlists[w.id] = w

    def _wishlist_deleted(self, event: Event) -> None:
        self._wishlists.pop(msgspec.convert(event.data, _WishlistId).wishlist_id, None)

    def _item_added(self, event: Event) -> None:
        data = msgspec.convert(event.data, _ItemAdded)
        w = self._open(data.wishlist_id, event.at)
        self._put_item(w, data.item)
        w.updated_at = event.at

    def _item_removed(self, event: Event) -> None:
        data = msgspec.convert(event.data, _ItemRemoved)
        self._drop_item(data.wishlist_id, data.item_id, event.at)

    def _item_moved(self, event: Event) -> None:
        data = msgspec.convert(event.data, _ItemMoved)
        self._drop_item(data.wishlist_id, data.item_id, event.at)
        self._lines[data.line.id] = data.line
