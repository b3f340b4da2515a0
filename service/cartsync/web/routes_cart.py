"""Cart routes of one owner."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from cartsync import wire
from cartsync.domain.merge import MergeStrategy
from cartsync.domain.model import Cart, attrs_key, line_key
from cartsync.domain.principal import Owner, Role
from cartsync.errors import Forbidden, InvalidInput, Unauthenticated
from cartsync.web.endpoints import Call, Endpoint, json_response

MAX_HISTORY = 1000


def _present(**fields: Any) -> dict[str, Any]:
    """Payload for a script: absent optional fields stay absent (Lua has no null)."""
    return {k: v for k, v in fields.items() if v is not None and v is not msgspec.UNSET}


async def get_cart(call: Call[None]) -> Response:
    snap = await call.services.store.snapshot(call.owner, "cart")
    etag = f'"{snap.rev}"'
    if call.request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return json_response(snap.cart, rev=snap.rev)


async def add_line(call: Call[wire.AddLine]) -> Response:
    b = call.body
    payload = _present(
        sku=b.sku,
        qty=b.qty,
        attrs=b.attrs,
        key=line_key(b.sku, b.attrs),
        title=b.title,
        unit_price=b.unit_price,
    )
    return await call.mutate("line_add", payload)


async def patch_line(call: Call[wire.PatchLine]) -> Response:
    b = call.body
    if b.qty is msgspec.UNSET and b.attrs is msgspec.UNSET:
        raise InvalidInput("send qty, attrs or both", code="invalid_field", field="qty")
    payload = _present(line_id=call.request.path_params["line_id"], qty=b.qty)
    if not isinstance(b.attrs, msgspec.UnsetType):
        # Only the script knows the line's sku; it prefixes it to make the line key.
        payload["attrs"] = b.attrs
        payload["attrs_key"] = attrs_key(b.attrs)
    return await call.mutate("line_update", payload)


async def remove_line(call: Call[None]) -> Response:
    return await call.mutate("line_remove", {"line_id": call.request.path_params["line_id"]})


async def clear_cart(call: Call[None]) -> Response:
    return await call.mutate("cart_clear", {})


async def set_note(call: Call[wire.SetNote]) -> Response:
    return await call.mutate("note_set", {"note": call.body.note})


async def save_for_later(call: Call[None]) -> Response:
    return await call.mutate(
        "line_save_for_later", {"line_id": call.request.path_params["line_id"]}
    )


async def checkout(call: Call[None]) -> Response:
    return await call.mutate("checkout", {})


async def merge(call: Call[wire.MergeCarts]) -> Response:
    if call.owner.is_guest:
        raise Forbidden("only a customer's cart can take in a guest cart")
    try:
        guest = call.services.verifier.verify(call.body.guest_token)
    except Unauthenticated as exc:
        raise InvalidInput(
            f"guest_token is not valid: {exc.message}",
            code="invalid_guest_token",
            field="guest_token",
        ) from exc
    if guest.role is not Role.GUEST:
        raise InvalidInput(
            "guest_token must be a guest token", code="invalid_guest_token", field="guest_token"
        )
    store = call.services.store
    report = await store.merge(
        call.owner, Owner(Role.GUEST, guest.subject), MergeStrategy(call.body.strategy), call.actor
    )
    snap = await store.snapshot(call.owner, "all")
    result = wire.MergeResult(
        rev=snap.rev,
        cart=snap.cart,
        wishlists=snap.wishlists,
        already_merged=report.already_merged,
        dropped_lines=report.summary.get("dropped_lines", 0),
        capped_lines=report.summary.get("capped_lines", 0),
        dropped_items=report.summary.get("dropped_items", 0),
    )
    return json_response(result, rev=snap.rev)


async def history(call: Call[None]) -> Response:
    since = _int_param(call, "since", 0)
    limit = min(_int_param(call, "limit", MAX_HISTORY), MAX_HISTORY)
    snap = await call.services.store.history(call.owner, since, max(limit, 1))
    complete = since >= snap.rev or (snap.log_first is not None and snap.log_first <= since + 1)
    body = wire.History(rev=snap.rev, since=since, complete=complete, events=snap.events)
    return json_response(body, rev=snap.rev)


def _int_param(call: Call[Any], name: str, default: int) -> int:
    raw = call.request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(
            f"{name} must be a non-negative integer", code="invalid_field", field=name
        )
    return int(raw)


ENDPOINTS = [
    Endpoint("GET", "/cart", get_cart, "The owner's active cart", response=Cart),
    Endpoint(
        "POST",
        "/cart/lines",
        add_line,
        "Add a line, or add to the line with the same sku and attrs",
        body=wire.AddLine,
        response=wire.LineResult,
        status=201,
        mutation=True,
    ),
    Endpoint(
        "PATCH",
        "/cart/lines/{line_id}",
        patch_line,
        "Change a line's quantity or attrs (qty 0 removes it)",
        body=wire.PatchLine,
        response=wire.PatchLineResult,
        mutation=True,
    ),
    Endpoint(
        "DELETE",
        "/cart/lines/{line_id}",
        remove_line,
        "Remove a line",
        response=wire.Removed,
        mutation=True,
    ),
    Endpoint(
        "DELETE", "/cart", clear_cart, "Remove every line", response=wire.RevOnly, mutation=True
    ),
    Endpoint(
        "PUT",
        "/cart/note",
        set_note,
        "Set the cart's note",
        body=wire.SetNote,
        response=wire.NoteResult,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/cart/lines/{line_id}/save-for-later",
        save_for_later,
        "Move a line to the 'saved' wishlist",
        response=wire.SavedForLater,
        mutation=True,
    ),
    Endpoint(
        "POST",
        "/cart/merge",
        merge,
        "Fold a guest's cart and wishlists into this customer's, then erase the guest's",
        body=wire.MergeCarts,
        response=wire.MergeResult,
    ),
    Endpoint(
        "POST",
        "/cart/checkout",
        checkout,
        "Freeze the cart: return its final snapshot and start a new empty cart",
        response=wire.CheckoutResult,
        mutation=True,
    ),
    Endpoint(
        "GET",
        "/cart/history",
        history,
        "Events after revision `since` (query: since, limit)",
        response=wire.History,
    ),
]
