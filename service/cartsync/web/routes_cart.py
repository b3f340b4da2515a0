"""Cart routes of one owner."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.responses import Response

from cartsync import wire
from cartsync.domain.merge import MergeStrategy
from cartsync.domain.model import Cart
from cartsync.domain.principal import Owner, Role
from cartsync.errors import Forbidden, InvalidInput, Unauthenticated
from cartsync.web import inputs
from cartsync.web.endpoints import Call, Endpoint, QueryParam, json_response

MAX_HISTORY = 1000


_ETAG_LIST = re.compile(r'\*|(?:W/)?"[0-9]{1,15}"(?: *, *(?:W/)?"[0-9]{1,15}")*')


def unchanged_at(raw: str | None) -> Callable[[int], bool]:
    """``If-None-Match``: ``*`` or a list of our ETags (weak comparison, RFC 9110 13.1.2)."""
    if raw is None:
        return lambda rev: False
    raw = raw.strip()
    if _ETAG_LIST.fullmatch(raw) is None:
        raise InvalidInput(
            'If-None-Match must be * or ETags like "12", comma-separated',
            code="bad_header",
            field="If-None-Match",
        )
    if raw == "*":
        return lambda rev: True
    revs = {int(tag) for tag in re.findall(r'"([0-9]+)"', raw)}
    return lambda rev: rev in revs


async def get_cart(call: Call[None]) -> Response:
    unchanged = unchanged_at(call.request.headers.get("if-none-match"))
    snap = await call.services.store.snapshot(call.owner, "cart")
    if unchanged(snap.rev):
        return Response(status_code=304, headers={"ETag": f'"{snap.rev}"'})
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
    guest_owner = Owner(Role.GUEST, guest.subject)
    strategy = MergeStrategy(call.body.strategy)
    if call.body.dry_run:
        preview = await store.preview_merge(
            call.owner, guest_owner, strategy, call.actor, reprice=call.services.pricing.reprice
        )
        planned = wire.MergeResult(
            rev=preview.rev,
            cart=preview.cart,
            wishlists=preview.wishlists,
            already_merged=preview.already_merged,
            dropped_lines=preview.summary.get("dropped_lines", 0),
            capped_lines=preview.summary.get("capped_lines", 0),
            dropped_items=preview.summary.get("dropped_items", 0),
            dry_run=True,
        )
        return json_response(planned, rev=preview.rev)
    # The guest's lines get the catalogue's current names and prices, in one lookup.
    reprice = call.services.pricing.reprice
    report = await store.merge(call.owner, guest_owner, strategy, call.actor, reprice=reprice)
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
    # limit=0 asks for no events (rev, epoch and complete only); the script reads at least one.
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
        rev=snap.rev, epoch=snap.epoch, since=since, complete=complete, events=snap.events[:limit]
    )
    return json_response(body, rev=snap.rev)


ENDPOINTS = [
    Endpoint("GET", "/cart", get_cart, "The owner's active cart", response=Cart, conditional=True),
    Endpoint(
        "POST",
        "/cart/merge",
        merge,
        "Fold a guest's cart and wishlists into this customer's, then erase the guest's "
        "(`dry_run`: only answer what it would do)",
        body=wire.MergeCarts,
        response=wire.MergeResult,
        staff=False,
        example={"guest_token": "<the guest's token>", "strategy": "sum", "dry_run": True},
    ),
    Endpoint(
        "GET",
        "/cart/history",
        history,
        "Events after revision `since`, oldest first; page with `since` = the last event's rev",
        response=wire.History,
        query=(
            QueryParam("since", wire.Revision, "Revision the client has (default 0)", 12),
            QueryParam(
                "limit",
                wire.Revision,
                f"At most this many events (default and cap {MAX_HISTORY}); 0 answers none",
                50,
            ),
            QueryParam(
                "epoch",
                str,
                "The epoch the client's revisions belong to: another one answers no events "
                "and complete=false (reload)",
            ),
        ),
    ),
]
