"""The event types of protocol ``cartsync.v1`` this client knows, and what their data holds.

A test compares this set with the service's own list, so a server that learns a new event type
fails the client's suite until the client handles it. A client meeting a type it does not know
(a newer server) asks for a snapshot instead of guessing what the event changed.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EVENT_TYPES", "STATELESS_EVENT_TYPES"]

STATELESS_EVENT_TYPES: Final = frozenset({"grant.started", "grant.revoked"})
"""Events that take a revision but change no cart line, note or wishlist."""

EVENT_TYPES: Final = frozenset(
    {
        "line.added",  # {line}
        "line.updated",  # {line}
        "line.removed",  # {line_id}
        "line.saved_for_later",  # {line_id, wishlist_id, item}
        "cart.cleared",  # {}
        "cart.note_set",  # {note}
        "cart.checked_out",  # {cart_id, ...}: the old cart; the new one is empty
        "cart.merged",  # {lines, wishlists}: the whole state after the merge
        "cart.collection_set",  # {ready}
        "cart.restored",  # {restored_rev, reason, note, lines, wishlists}: support's restore
        "owner.erased",  # never logged: rev 0, an empty epoch; a snapshot follows
        "wishlist.created",  # {wishlist}
        "wishlist.renamed",  # {wishlist}
        "wishlist.deleted",  # {wishlist_id}
        "wishlist.item_added",  # {wishlist_id, item}
        "wishlist.item_removed",  # {wishlist_id, item_id}
        "wishlist.item_moved_to_cart",  # {wishlist_id, item_id, line}
        *STATELESS_EVENT_TYPES,  # grant.started {grant}, grant.revoked {grant_id}
    }
)
