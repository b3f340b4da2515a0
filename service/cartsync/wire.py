"""The contract: msgspec types of every HTTP request and response body.

Input types forbid unknown fields; their ``Meta`` constraints are the format rules, checked while
decoding. Count limits that depend on stored state (lines per cart, items per wishlist) are checked
atomically in the store.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from cartsync.domain.consent import Grant
from cartsync.domain.limits import QTY_CEILING
from cartsync.domain.model import Cart, Collection, Event, Line, WishItem, Wishlist
from cartsync.domain.pickup import Hours

Sku = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$(?!\n)", description="Product or variant id")
]
Qty = Annotated[int, Meta(ge=1, le=QTY_CEILING)]
QtyOrZero = Annotated[int, Meta(ge=0, le=QTY_CEILING, description="0 removes the line")]
QtyDelta = Annotated[
    int,
    Meta(
        ge=-QTY_CEILING,
        le=QTY_CEILING,
        description="added to the stored quantity: every tap counts; 0 or less removes the line",
    ),
]
AttrName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$(?!\n)")]
AttrValue = Annotated[str, Meta(max_length=256)]
Attrs = Annotated[
    dict[AttrName, AttrValue],
    Meta(max_length=16, description="Variant attributes such as size or colour, at most 16"),
]
Title = Annotated[str, Meta(min_length=1, max_length=200)]
Price = Annotated[
    str,
    Meta(pattern=r"^\d{1,9}(\.\d{1,4})?$(?!\n)", description="Decimal amount in the cart currency"),
]
Note = Annotated[str, Meta(max_length=1000)]
WishlistName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\S")]
MergeStrategyName = Literal["sum", "max", "replace", "keep"]
MAX_REVISION = 2**53 - 1
"""The largest revision any input may name: beyond it Lua (doubles) no longer counts exactly, so
a larger ``since`` or If-Match is refused at the edge instead of reaching a script."""
Revision = Annotated[int, Meta(ge=0, le=MAX_REVISION)]


class Input(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are an error, not silently dropped."""


class AddLine(Input):
    sku: Sku
    qty: Qty = 1
    attrs: Attrs = msgspec.field(default_factory=dict)
    title: Title | None = None
    unit_price: Price | None = None


class PatchLine(Input):
    min_properties: ClassVar[int] = 1
    """``{}`` is refused (422): send qty or qty_delta, attrs, or both (as the OpenAPI says)."""
    exclusive: ClassVar[tuple[str, ...]] = ("qty", "qty_delta")
    """Never both (422; the OpenAPI says so with ``not: {required: [...]}``)."""

    qty: QtyOrZero | UnsetType = UNSET
    qty_delta: QtyDelta | UnsetType = UNSET
    """A change ("+1") rather than a value: a screen that is behind cannot undo another tap."""
    attrs: Attrs | UnsetType = UNSET


class SetNote(Input):
    note: Note


class RestoreCart(Input):
    """Support puts the cart (and, asked, the wishlists) back as they were at ``rev``."""

    rev: Revision
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    """Why (the customer's request, a ticket): recorded in the ``cart.restored`` event."""
    wishlists: bool = False
    epoch: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    """The epoch ``rev`` counts in, as support read it: another one is refused (409)."""


class MergeCarts(Input):
    guest_token: Annotated[str, Meta(min_length=1, max_length=4096)]
    strategy: MergeStrategyName = "sum"
    dry_run: bool = False
    """Answer what the merge would do, changing nothing (not even the guest's claim)."""


class CreateWishlist(Input):
    name: WishlistName


class PatchWishlist(Input):
    name: WishlistName


class AddWishItem(Input):
    sku: Sku
    attrs: Attrs = msgspec.field(default_factory=dict)
    title: Title | None = None
    note: Note | None = None


class MoveToCart(Input):
    qty: Qty = 1


StoreId = Annotated[
    str, Meta(min_length=1, max_length=64, description="A store of GET /v1/stores; null clears")
]
PickupAt = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="A slot start of that store, ISO 8601 with its offset; null clears",
        extra_json_schema={"format": "date-time"},
    ),
]


class SetCollection(Input):
    """Click-and-collect: ``ready`` (staff have the order ready), the store and pick-up time
    (``store_id`` and ``pickup_at`` together; both null clears the choice), or both. A field
    left out keeps its value."""

    min_properties: ClassVar[int] = 1
    """``{}`` is refused (422): send ready, the store and time, or both."""

    ready: bool | UnsetType = UNSET
    store_id: StoreId | UnsetType | None = UNSET
    pickup_at: PickupAt | UnsetType | None = UNSET


# Responses --------------------------------------------------------------------------------


class ErrorDetail(Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(Struct):
    error: ErrorDetail


class LineResult(Struct):
    rev: int
    line: Line


class PatchLineResult(Struct, omit_defaults=True):
    rev: int
    line: Line | None = None
    removed: str | None = None


class Removed(Struct):
    rev: int
    removed: str


class RevOnly(Struct):
    rev: int


class NoteResult(Struct):
    rev: int
    note: str


class SavedForLater(Struct):
    rev: int
    wishlist_id: str
    item: WishItem


class Checkout(Struct):
    cart_id: str
    owner: str
    currency: str
    note: str
    checked_out_at: str
    lines: list[Line]
    collection: Collection | None = None
    """The click-and-collect choice as it was; checkout clears it from the cart."""


class CheckoutResult(Struct):
    rev: int
    checkout: Checkout
    cart_id: str


class MergeResult(Struct):
    rev: int
    cart: Cart
    wishlists: list[Wishlist]
    already_merged: bool
    dropped_lines: int
    capped_lines: int
    dropped_items: int
    dry_run: bool = False
    """A preview: ``cart`` and ``wishlists`` are the plan at revision ``rev``, nothing was
    written, and lines and items the guest brings keep the guest's ids until applied."""


class Wishlists(Struct):
    rev: int
    wishlists: list[Wishlist]


class WishlistResult(Struct):
    rev: int
    wishlist: Wishlist


class WishItemResult(Struct):
    rev: int
    item: WishItem
    created: bool


class History(Struct):
    rev: int
    epoch: str | None
    since: int
    complete: bool
    events: list[Event]


class GuestToken(Struct):
    token: str
    guest_id: str
    expires_at: str


class SupportRead(Struct):
    """One look at a customer's data by support: when, who, why, and at what."""

    at: str
    agent: str
    reason: str
    what: str


class Export(Struct):
    owner: str
    exported_at: str
    cart: Cart
    wishlists: list[Wishlist]
    events: list[Event]
    support_reads: list[SupportRead] = msgspec.field(default_factory=list)
    """Every read of this customer's data by support, newest first (docs/support.md)."""


class RestoreResult(Struct):
    rev: int
    restored_rev: int


class Erased(Struct):
    erased: bool


class CollectionResult(Struct):
    rev: int
    ready: bool
    collection: Collection


class PickupStore(Struct):
    """A store that takes click-and-collect orders, and its next pick-up slots."""

    id: str
    name: str
    address: str
    timezone: str
    """IANA timezone; slots and hours are in this local time."""
    hours: dict[str, Hours]
    """Weekday (mon .. sun) -> opening hours; a day left out is closed."""
    slot_minutes: int
    lead_minutes: int
    days_ahead: int
    next_slots: list[str]
    """The earliest bookable slot starts, ISO 8601 in the store's local time."""


class PickupStores(Struct):
    stores: list[PickupStore]


class Handoff(Struct):
    code: str
    expires_at: str
    qr_svg: str


class GrantResult(Struct):
    grant: Grant


class Grants(Struct):
    grants: list[Grant]


class Health(Struct, omit_defaults=True):
    status: str
    detail: str | None = None


REQUEST_TYPES: tuple[type[Any], ...] = (
    AddLine,
    PatchLine,
    SetNote,
    MergeCarts,
    CreateWishlist,
    PatchWishlist,
    AddWishItem,
    MoveToCart,
    SetCollection,
)


# Websocket frames ------------------------------------------------------------------------
# Client frames are a tagged union on "type"; unknown types and fields close the socket (1008).


class Frame(Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    """Base of client frames."""


class AuthFrame(Frame, tag="auth"):
    token: Annotated[str, Meta(min_length=1, max_length=8192)]


class SyncFrame(Frame, tag="sync"):
    since: Revision | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None
    at: Annotated[str, Meta(max_length=64)] | None = None
    """When revision ``since`` was made (its event's ``at``, a snapshot's ``cart.updated_at``):
    if a failover lost that change, the server's revision ``since`` has another ``at``."""


class OpFrame(Frame, tag="op"):
    id: Annotated[str, Meta(pattern=r"^[\x21-\x7e]{1,255}$(?!\n)")]
    name: str
    params: dict[str, Annotated[str, Meta(max_length=128)]] = msgspec.field(default_factory=dict)
    body: msgspec.Raw = msgspec.Raw(b"{}")
    if_match: Revision | None = None


class PingFrame(Frame, tag="ping"):
    pass


class PongFrame(Frame, tag="pong"):
    pass


DeviceKind = Literal["phone", "tablet", "desktop", "other"]


class DeviceFrame(Frame, tag="device"):
    """Names this socket's device for the owner's other devices (presence)."""

    label: Annotated[str, Meta(min_length=1, max_length=64)]
    kind: DeviceKind = "other"


ClientFrame = AuthFrame | SyncFrame | OpFrame | PingFrame | PongFrame | DeviceFrame


class Hello(Struct, tag_field="type", tag="hello"):
    rev: int
    owner: str
    epoch: str | None
    expires_at: int | None = None
    """When the socket's token expires (Unix seconds): send a fresh ``auth`` before then, or
    the socket closes with 4401."""


class Authenticated(Struct, tag_field="type", tag="authenticated"):
    """A fresh ``auth`` on an open socket was accepted: it now lasts until ``expires_at``."""

    expires_at: int


class SnapshotFrame(Struct, tag_field="type", tag="snapshot"):
    rev: int
    cart: Cart
    wishlists: list[Wishlist]


class Ack(Struct, tag_field="type", tag="ack"):
    id: str
    rev: int
    status: int
    result: msgspec.Raw
    replayed: bool = False


class Nack(Struct, tag_field="type", tag="nack", omit_defaults=True):
    id: str
    error: ErrorDetail
    rev: int | None = None
    """The current revision, when the op was refused for a stale ``if_match``."""


class ErrorFrame(Struct, tag_field="type", tag="error"):
    error: ErrorDetail


class ServerPing(Struct, tag_field="type", tag="ping"):
    pass


class PresentDevice(Struct):
    id: str
    label: str | None
    kind: str
    role: str
    store: str | None
    you: bool


class PresenceFrame(Struct, tag_field="type", tag="presence"):
    """The owner's live devices (every socket of the owner, a consented tablet included)."""

    devices: list[PresentDevice]


# Back-office events (docs/events.md) -------------------------------------------------------


class BackOfficeEvent(Struct):
    """One back-office event, as webhooks carry it and ``GET /v1/events`` lists it."""

    id: str
    """The same on every retry and replay: receivers dedupe by it (``webhook-id``)."""
    type: str
    occurred_at: str
    owner: str
    customer_id: str | None
    rev: int
    epoch: str
    data: dict[str, Any]


class EventsPage(Struct):
    events: list[BackOfficeEvent]
    next: str
    """The cursor to pass as ``after`` next time (also when every event was filtered out)."""
