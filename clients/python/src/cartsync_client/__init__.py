"""cartsync's Python client: REST calls with safe retries, and live updates over a websocket.

    async with CartsyncClient("https://cartsync.example", token) as client:
        await client.add_line("CAP-1", qty=2)
        async with client.subscribe() as live:
            async for update in live:
                ...

Depends on httpx, websockets and msgspec only; nothing from the service package. It speaks
protocol ``PROTOCOL`` (``cartsync.v1``); its major version is that protocol's version, so any
1.x client works with any service that speaks ``cartsync.v1``.
"""

from __future__ import annotations

from cartsync_client.backoff import Backoff
from cartsync_client.client import CartsyncClient, MergeStrategy, guest_token
from cartsync_client.errors import (
    CartsyncError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    RateLimited,
    SessionClosed,
    Unauthorized,
    Unavailable,
)
from cartsync_client.events import EVENT_TYPES
from cartsync_client.live import PROTOCOL, Subscription
from cartsync_client.mirror import CartMirror, MirrorError
from cartsync_client.models import (
    Ack,
    Actor,
    Cart,
    Checkout,
    CheckoutResult,
    Collection,
    CollectionResult,
    Erased,
    Event,
    Export,
    Grant,
    GrantResult,
    Grants,
    GuestToken,
    Handoff,
    History,
    Line,
    LineResult,
    MergeResult,
    NoteResult,
    PatchLineResult,
    Removed,
    RevOnly,
    SavedForLater,
    Snapshot,
    Update,
    WishItem,
    WishItemResult,
    Wishlist,
    WishlistResult,
    Wishlists,
)
from cartsync_client.tokens import TokenProvider

__version__ = "1.0.0"

__all__ = [
    "EVENT_TYPES",
    "PROTOCOL",
    "Ack",
    "Actor",
    "Backoff",
    "Cart",
    "CartMirror",
    "CartsyncClient",
    "CartsyncError",
    "Checkout",
    "CheckoutResult",
    "Collection",
    "CollectionResult",
    "Conflict",
    "Erased",
    "Event",
    "Export",
    "Forbidden",
    "Grant",
    "GrantResult",
    "Grants",
    "GuestToken",
    "Handoff",
    "History",
    "InvalidRequest",
    "Line",
    "LineResult",
    "MergeResult",
    "MergeStrategy",
    "MirrorError",
    "NotFound",
    "NoteResult",
    "PatchLineResult",
    "PreconditionFailed",
    "RateLimited",
    "Removed",
    "RevOnly",
    "SavedForLater",
    "SessionClosed",
    "Snapshot",
    "Subscription",
    "TokenProvider",
    "Unauthorized",
    "Unavailable",
    "Update",
    "WishItem",
    "WishItemResult",
    "Wishlist",
    "WishlistResult",
    "Wishlists",
    "__version__",
    "guest_token",
]
