"""Wishlist routes of one owner."""

from __future__ import annotations

from starlette.responses import Response

from cartsync import wire
from cartsync.errors import NotFound
from cartsync.web.endpoints import Call, Endpoint, json_response


async def list_wishlists(call: Call[None]) -> Response:
    snap = await call.services.store.snapshot(call.owner, "wishlists")
    return json_response(wire.Wishlists(rev=snap.rev, wishlists=snap.wishlists), rev=snap.rev)


async def get_wishlist(call: Call[None]) -> Response:
    wishlist_id = call.request.path_params["wishlist_id"]
    snap = await call.services.store.snapshot(call.owner, "wishlists")
    for w in snap.wishlists:
        if w.id == wishlist_id:
            return json_response(wire.WishlistResult(rev=snap.rev, wishlist=w), rev=snap.rev)
    raise NotFound("no such wishlist", code="wishlist_not_found", field="wishlist_id")


ENDPOINTS = [
    Endpoint("GET", "/wishlists", list_wishlists, "All wishlists", response=wire.Wishlists),
    Endpoint(
        "GET",
        "/wishlists/{wishlist_id}",
        get_wishlist,
        "One wishlist",
        response=wire.WishlistResult,
    ),
]
