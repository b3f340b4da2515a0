"""``CartsyncClient``: one method per REST route of an owner's cart, wishlists, data and
staff hand-offs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from cartsync_client.backoff import Backoff
from cartsync_client.live import Subscription
from cartsync_client.models import (
    Cart,
    CheckoutResult,
    CollectionResult,
    Erased,
    Export,
    GrantResult,
    Grants,
    GuestToken,
    Handoff,
    History,
    LineResult,
    MergeResult,
    NoteResult,
    PatchLineResult,
    PickupStore,
    Removed,
    RevOnly,
    SavedForLater,
    WishItemResult,
    WishlistResult,
    Wishlists,
    _PickupStores,
)
from cartsync_client.tokens import TokenProvider, TokenSource
from cartsync_client.transport import Transport

__all__ = ["CartsyncClient", "MergeStrategy", "guest_token"]

T = TypeVar("T")
MergeStrategy = Literal["sum", "max", "replace", "keep"]


def _segment(value: str) -> str:
    """A path parameter, escaped so an id can never change which route is called."""
    return quote(value, safe="")


def _present(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left at None, so the service applies its defaults."""
    return {k: v for k, v in fields.items() if v is not None}


class _Keep:
    """The default of an argument left out: the service keeps what it stores."""


KEEP = _Keep()


class CartsyncClient:
    """A customer's, guest's or back-end service's view of one cart and its wishlists.

    Use as ``async with CartsyncClient(url, token) as client:``; the client holds one connection
    pool. ``token`` is a token or a provider (a callable, sync or async, returning one), asked
    on first use and whenever the service refuses the token it gave (see ``tokens.py``). With a
    service token, pass ``customer=`` (or call ``service_for``) to act on
    ``/v1/customers/{id}/...``; with a staff token, ``for_grant`` acts on the customer's cart a
    hand-off gave access to. Every method raises a ``CartsyncError`` subclass on refusal.
    """

    def __init__(
        self,
        base_url: str,
        token: str | TokenProvider,
        *,
        device_id: str | None = None,
        timeout: float = 10,
        retries: int = 3,
        customer: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        headers = {}
        if device_id is not None:
            headers["X-Device-Id"] = device_id
        self._base_url = base_url.rstrip("/")
        self._tokens = TokenSource(token)
        self._device_id = device_id
        self._backoff = backoff or Backoff()
        self._transport = Transport(
            self._base_url,
            headers,
            timeout=timeout,
            retries=retries,
            backoff=self._backoff,
            tokens=self._tokens,
        )
        self._prefix = "/v1" if customer is None else f"/v1/customers/{_segment(customer)}"
        self._grant_id: str | None = None
        self._owns_transport = True

    @property
    def token_refreshes(self) -> int:
        """How many times the token provider was called (0 for a fixed token)."""
        return self._tokens.calls

    def service_for(self, customer_id: str) -> CartsyncClient:
        """The same connection pool acting on one customer's data, for service tokens."""
        view = object.__new__(CartsyncClient)
        view.__dict__.update(self.__dict__)
        view._prefix = f"/v1/customers/{_segment(customer_id)}"
        view._owns_transport = False
        return view

    def for_grant(self, grant_id: str) -> CartsyncClient:
        """The same pool acting on the customer's cart of a grant (``/v1/grants/{id}/...``),
        for the staff token that claimed it; ``subscribe`` on it follows that cart live."""
        view = object.__new__(CartsyncClient)
        view.__dict__.update(self.__dict__)
        view._prefix = f"/v1/grants/{_segment(grant_id)}"
        view._grant_id = grant_id
        view._owns_transport = False
        return view

    async def __aenter__(self) -> CartsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (a ``service_for`` view leaves its parent's pool open)."""
        if self._owns_transport:
            await self._transport.aclose()

    async def _call(self, method: str, path: str, response: type[T], **kw: Any) -> T:
        return await self._transport.call(method, self._prefix + path, response, **kw)

    # Cart -------------------------------------------------------------------------------

    async def get_cart(self) -> Cart:
        return await self._call("GET", "/cart", Cart)

    async def add_line(
        self,
        sku: str,
        qty: int = 1,
        attrs: dict[str, str] | None = None,
        title: str | None = None,
        unit_price: str | None = None,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> LineResult:
        """Add ``qty`` of a sku; the same sku and attrs adds to the existing line."""
        body = _present(sku=sku, qty=qty, attrs=attrs, title=title, unit_price=unit_price)
        return await self._call(
            "POST",
            "/cart/lines",
            LineResult,
            body=body,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def patch_line(
        self,
        line_id: str,
        qty: int | None = None,
        attrs: dict[str, str] | None = None,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> PatchLineResult:
        """Set a line's quantity, attrs or both; qty 0 removes the line."""
        return await self._call(
            "PATCH",
            f"/cart/lines/{_segment(line_id)}",
            PatchLineResult,
            body=_present(qty=qty, attrs=attrs),
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def remove_line(
        self, line_id: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> Removed:
        return await self._call(
            "DELETE",
            f"/cart/lines/{_segment(line_id)}",
            Removed,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def clear_cart(
        self, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> RevOnly:
        return await self._call(
            "DELETE", "/cart", RevOnly, if_match=if_match, idempotency_key=idempotency_key
        )

    async def set_note(
        self, note: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> NoteResult:
        return await self._call(
            "PUT",
            "/cart/note",
            NoteResult,
            body={"note": note},
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def save_for_later(
        self, line_id: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> SavedForLater:
        """Move a line to the ``saved`` wishlist."""
        return await self._call(
            "POST",
            f"/cart/lines/{_segment(line_id)}/save-for-later",
            SavedForLater,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def checkout(
        self, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> CheckoutResult:
        """Freeze the cart for the order system and start a new empty one."""
        return await self._call(
            "POST",
            "/cart/checkout",
            CheckoutResult,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def merge(self, guest_token: str, strategy: MergeStrategy = "sum") -> MergeResult:
        """Fold a guest's cart and wishlists into this customer's; repeating it is harmless."""
        return await self._call(
            "POST",
            "/cart/merge",
            MergeResult,
            body={"guest_token": guest_token, "strategy": strategy},
        )

    async def set_ready_for_collection(
        self,
        ready: bool = True,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> CollectionResult:
        """Mark the cart ready (or no longer ready) for click-and-collect; an empty cart is 422."""
        return await self._call(
            "PUT",
            "/cart/collection",
            CollectionResult,
            body={"ready": ready},
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def set_collection(
        self,
        store_id: str | _Keep | None = KEEP,
        pickup_at: str | None = None,
        *,
        ready: bool | None = None,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> CollectionResult:
        """Click-and-collect: choose a store and pick-up time (a slot of ``list_stores``;
        ``store_id=None`` clears the choice) and/or set ``ready``; what is left out stays.

        A store or time the shop cannot take is 422 (``unknown_store``, ``invalid_pickup``);
        409 ``collection_unavailable`` when the shop has no stores set up."""
        body: dict[str, Any] = {}
        if not isinstance(store_id, _Keep):
            body["store_id"] = store_id
            body["pickup_at"] = pickup_at if store_id is not None else None
        if ready is not None:
            body["ready"] = ready
        return await self._call(
            "PUT",
            "/cart/collection",
            CollectionResult,
            body=body,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def list_stores(self) -> list[PickupStore]:
        """The stores that take click-and-collect orders, with their next pick-up slots."""
        found = await self._transport.call("GET", "/v1/stores", _PickupStores)
        return found.stores

    async def history(self, since: int = 0, limit: int | None = None) -> History:
        """Events after revision ``since``, oldest first (at most ``limit``, server max 1000)."""
        query = _present(since=since, limit=limit)
        return await self._call("GET", "/cart/history", History, query=query)

    async def history_pages(
        self, since: int = 0, limit: int | None = None
    ) -> AsyncIterator[History]:
        """Every page of events after ``since``, up to the revision of the first answer.

        Each page starts after the last event of the one before, so the loop ends: at an empty
        page, at that revision, or at a page whose ``complete`` is False (the log no longer
        reaches back to ``since``: reload the cart instead).
        """
        first = await self.history(since, limit)
        page, end = first, first.rev
        while True:
            yield page
            if not page.complete or not page.events or page.events[-1].rev >= end:
                return
            page = await self.history(page.events[-1].rev, limit)

    # Wishlists --------------------------------------------------------------------------

    async def list_wishlists(self) -> Wishlists:
        return await self._call("GET", "/wishlists", Wishlists)

    async def get_wishlist(self, wishlist_id: str) -> WishlistResult:
        return await self._call("GET", f"/wishlists/{_segment(wishlist_id)}", WishlistResult)

    async def create_wishlist(
        self, name: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> WishlistResult:
        return await self._call(
            "POST",
            "/wishlists",
            WishlistResult,
            body={"name": name},
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def rename_wishlist(
        self,
        wishlist_id: str,
        name: str,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> WishlistResult:
        return await self._call(
            "PATCH",
            f"/wishlists/{_segment(wishlist_id)}",
            WishlistResult,
            body={"name": name},
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def delete_wishlist(
        self, wishlist_id: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> Removed:
        return await self._call(
            "DELETE",
            f"/wishlists/{_segment(wishlist_id)}",
            Removed,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def add_item(
        self,
        wishlist_id: str,
        sku: str,
        attrs: dict[str, str] | None = None,
        title: str | None = None,
        note: str | None = None,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> WishItemResult:
        """Add an item; one already on the list comes back unchanged with ``created`` False."""
        return await self._call(
            "POST",
            f"/wishlists/{_segment(wishlist_id)}/items",
            WishItemResult,
            body=_present(sku=sku, attrs=attrs, title=title, note=note),
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def remove_item(
        self,
        wishlist_id: str,
        item_id: str,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> Removed:
        return await self._call(
            "DELETE",
            f"/wishlists/{_segment(wishlist_id)}/items/{_segment(item_id)}",
            Removed,
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    async def move_to_cart(
        self,
        wishlist_id: str,
        item_id: str,
        qty: int = 1,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> LineResult:
        return await self._call(
            "POST",
            f"/wishlists/{_segment(wishlist_id)}/items/{_segment(item_id)}/move-to-cart",
            LineResult,
            body={"qty": qty},
            if_match=if_match,
            idempotency_key=idempotency_key,
        )

    # Privacy ----------------------------------------------------------------------------

    async def export(self) -> Export:
        """Everything the service holds for this owner, including the retained events."""
        return await self._call("GET", "/me/export", Export)

    async def erase(self) -> Erased:
        """Erase everything held for this owner; the revision starts again from 0."""
        return await self._call("DELETE", "/me", Erased)

    # Hand-off to store staff --------------------------------------------------------------

    async def create_handoff(self) -> Handoff:
        """A one-time code (with its QR SVG) the customer shows a store employee."""
        return await self._transport.call("POST", "/v1/handoffs", Handoff)

    async def claim_handoff(self, code: str) -> GrantResult:
        """Staff: turn a customer's code into a grant for this staff member and store."""
        return await self._transport.call(
            "POST", f"/v1/handoffs/{_segment(code)}/claim", GrantResult
        )

    async def list_grants(self) -> Grants:
        """The customer's grants that have not expired or been revoked."""
        return await self._transport.call("GET", "/v1/grants", Grants)

    async def revoke_grant(self, grant_id: str, *, idempotency_key: str | None = None) -> Removed:
        """End a staff member's access now; their live socket closes with 4403."""
        return await self._transport.call(
            "DELETE", f"/v1/grants/{_segment(grant_id)}", Removed, idempotency_key=idempotency_key
        )

    # Live -------------------------------------------------------------------------------

    def subscribe(
        self, since: int | None = None, *, backoff: Backoff | None = None
    ) -> Subscription:
        """The owner's changes, live: ``async with client.subscribe() as live:``, then iterate.

        ``since`` None starts with a ``Snapshot``; an int resumes with the events after it. Only
        customer and guest tokens have a live socket of their own, and staff tokens one per
        grant (``for_grant``); a service token is refused. The subscription shares this client's
        token provider.
        """
        return Subscription(
            self._base_url,
            self._tokens,
            since=since,
            backoff=backoff or Backoff(base=0.25, cap=10.0),
            device_id=self._device_id,
            grant_id=self._grant_id,
        )


async def guest_token(
    base_url: str,
    *,
    timeout: float = 10,  # noqa: ASYNC109 - httpx's per-request timeout, as in CartsyncClient
    retries: int = 3,
    backoff: Backoff | None = None,
) -> GuestToken:
    """A new guest token (``POST /v1/guest``) for a signed-out device."""
    transport = Transport(
        base_url.rstrip("/"), {}, timeout=timeout, retries=retries, backoff=backoff or Backoff()
    )
    try:
        return await transport.call("POST", "/v1/guest", GuestToken)
    finally:
        await transport.aclose()
