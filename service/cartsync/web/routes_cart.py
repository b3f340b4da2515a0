"""Cart routes of one owner."""

from __future__ import annotations

from starlette.responses import Response

from cartsync import wire
from cartsync.domain.merge import MergeStrategy
from cartsync.domain.model import Cart
from cartsync.domain.principal import Owner, Role
from cartsync.errors import Forbidden, InvalidInput, Unauthenticated
from cartsync.web import inputs
from cartsync.web.endpoints import Call, Endpoint, json_response

MAX_HISTORY = 1000


async def get_cart(call: Call[None]) -> Response:
    snap = await call.services.store.snapshot(call.owner, "cart")
    etag = f'"{snap.rev}"'
    if call.request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return json_response(snap.cart, rev=snap.rev)


async def merge(call: Call[wire.MergeCarts]) -> Response:
    if call.owner.is_guest:
        raise Forbidden("only a customer's cart can take in a guest cart")
    try:
        guest = await call.services.verifier.verify(call.body.guest_token)
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
    snap = await store.snapshot(call.owner, "state")
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
    query = call.request.query_params
    since = inputs.query_int(query.get("since"), "since", 0)
    limit = min(inputs.query_int(query.get("limit"), "limit", MAX_HISTORY), MAX_HISTORY)
    epoch = query.get("epoch")
    snap = await call.services.store.history(call.owner, since, max(limit, 1))
    if epoch is not None and epoch != snap.epoch:
        # The revisions the client counts from belong to data that no longer exists.
        body = wire.History(rev=snap.rev, epoch=snap.epoch, since=since, complete=False, events=[])
        return json_response(body, rev=snap.rev)
    # since > rev means the client saw revisions this store no longer has (erased, expired or
    # Redis lost data): it missed state, so the answer is not complete.
    complete = since == snap.rev or (
        since < snap.rev and snap.log_first is not None and snap.log_first <= since + 1
    )
    body = wire.History(
        rev=snap.rev, epoch=snap.epoch, since=since, complete=complete, events=snap.events
    )
    return json_response(body, rev=snap.rev)


ENDPOINTS = [
    Endpoint("GET", "/cart", get_cart, "The owner's active cart", response=Cart),
    Endpoint(
        "POST",
        "/cart/merge",
        merge,
        "Fold a guest's cart and wishlists into this customer's, then erase the guest's",
        body=wire.MergeCarts,
        response=wire.MergeResult,
        staff=False,
    ),
    Endpoint(
        "GET",
        "/cart/history",
        history,
        "Events after revision `since` (query: since, limit)",
        response=wire.History,
    ),
]
