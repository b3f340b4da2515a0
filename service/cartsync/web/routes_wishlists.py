"""Wishlist routes of one owner."""

from __future__ import annotations

from starlette.responses import Response

from cartsync import wire
from cartsync.domain.merge import wishlist_name_key
from cartsync.domain.model import line_key
from cartsync.errors import NotFound
from cartsync.web.endpoints import Call, Endpoint, json_response
from cartsync.web.routes_cart import _present


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


async def create_wishlist(call: Call[wire.CreateWishlist]) -> Response:
    name = call.body.name.strip()
    return await call.mutate("wishlist_create", {"name": name, "name_key": wishlist_name_key(name)})


async def rename_wishlist(call: Call[wire.PatchWishlist]) -> Response:
    name = call.body.name.strip()
    payload = {
        "wishlist_id": call.request.path_params["wishlist_id"],
        "name": name,
        "name_key": wishlist_name_key(name),
    }
    return await call.mutate("wishlist_rename", payload)


async def delete_wishlist(call: Call[None]) -> Response:
    return await call.mutate(
        "wishlist_delete", {"wishlist_id": call.request.path_params["wishlist_id"]}
    )


async def add_item(call: Call[wire.AddWishItem]) -> Response:
    b = call.body
    payload = _present(
        wishlist_id=call.request.path_params["wishlist_id"],
        sku=b.sku,
        attrs=b.attrs,
        key=line_key(b.sku, b.attrs),
        title=b.title,
        note=b.note,
    )
    return await call.mutate("item_add", payload)


async def remove_item(call: Call[None]) -> Response:
    params = call.request.path_params
    return await call.mutate(
        "item_remove", {"wishlist_id": params["wishlist_id"], "item_id": params["item_id"]}
    )


async def move_to_cart(call: Call[wire.MoveToCart]) -> Response:
    params = call.request.path_params
    payload = {
        "wishlist_id": params["wishlist_id"],
        "item_id": params["item_id"],
        "qty": call.body.qty,
    }
    return await call.mutate("item_move_to_cart", payload)


ENDPOINTS = [
    Endpoint("GET", "/wishlists", list_wishlists, "All wishlists", response=wire.Wishlists),
    Endpoint(
        "POST",
        "/wishlists",
        create_wishlist,
        "Create a named wishlist",
        body=wire.CreateWishlist,
        response=wire.WishlistResult,
        status=201,
        mutation=True,
    ),
    Endpoint(
        "GET",
        "/wishlists/{wishlist_id}",
        get_wishlist,
        "One wishlist",
        response=wire.WishlistResult,
    ),
    Endpoint(
        "PATCH",
        "/wishlists/{wishlist_id}",
        rename_wishlist,
        "Rename a wishlist",
        body=wire.PatchWishlist,
        response=wire.WishlistResult,
        mutation=True,
    ),
    Endpoint(
        "DELETE",
        "/wishlists/{wishlist_id}",
        delete_wishlist,
        "Delete a wishlist and its items",
        response=wire.Removed,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/wishlists/{wishlist_id}/items",
        add_item,
        "Add an item (an existing sku+attrs is returned unchanged, 200)",
        body=wire.AddWishItem,
        response=wire.WishItemResult,
        status=201,
        mutation=True,
    ),
    Endpoint(
        "DELETE",
        "/wishlists/{wishlist_id}/items/{item_id}",
        remove_item,
        "Remove an item",
        response=wire.Removed,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/wishlists/{wishlist_id}/items/{item_id}/move-to-cart",
        move_to_cart,
        "Move an item into the cart",
        body=wire.MoveToCart,
        response=wire.LineResult,
        mutation=True,
    ),
]
