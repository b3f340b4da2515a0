"""Names of the events every change appends to its owner's log."""

from __future__ import annotations

from typing import Final

LINE_ADDED: Final = "line.added"
LINE_UPDATED: Final = "line.updated"
LINE_REMOVED: Final = "line.removed"
LINE_SAVED_FOR_LATER: Final = "line.saved_for_later"
CART_CLEARED: Final = "cart.cleared"
CART_NOTE_SET: Final = "cart.note_set"
CART_CHECKED_OUT: Final = "cart.checked_out"
CART_MERGED: Final = "cart.merged"
CART_COLLECTION_SET: Final = "cart.collection_set"
CART_RESTORED: Final = "cart.restored"
"""Support put the cart (and maybe the wishlists) back as they were at an earlier revision."""
GRANT_STARTED: Final = "grant.started"
GRANT_REVOKED: Final = "grant.revoked"
OWNER_ERASED: Final = "owner.erased"
"""Published (never logged) when an owner's data is erased; its rev is 0 and epoch empty."""
WISHLIST_CREATED: Final = "wishlist.created"
WISHLIST_RENAMED: Final = "wishlist.renamed"
WISHLIST_DELETED: Final = "wishlist.deleted"
WISHLIST_ITEM_ADDED: Final = "wishlist.item_added"
WISHLIST_ITEM_REMOVED: Final = "wishlist.item_removed"
WISHLIST_ITEM_MOVED_TO_CART: Final = "wishlist.item_moved_to_cart"

ALL: Final = frozenset(
    {
        LINE_ADDED,
        LINE_UPDATED,
        LINE_REMOVED,
        LINE_SAVED_FOR_LATER,
        CART_CLEARED,
        CART_NOTE_SET,
        CART_CHECKED_OUT,
        CART_MERGED,
        OWNER_ERASED,
        CART_COLLECTION_SET,
        CART_RESTORED,
        GRANT_STARTED,
        GRANT_REVOKED,
        WISHLIST_CREATED,
        WISHLIST_RENAMED,
        WISHLIST_DELETED,
        WISHLIST_ITEM_ADDED,
        WISHLIST_ITEM_REMOVED,
        WISHLIST_ITEM_MOVED_TO_CART,
    }
)

DEFAULT_WISHLIST: Final = "default"
SAVED_WISHLIST: Final = "saved"
SYSTEM_WISHLISTS: Final = frozenset({DEFAULT_WISHLIST, SAVED_WISHLIST})
