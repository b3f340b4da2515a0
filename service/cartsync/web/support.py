"""The support role at ``/v1/customers/{id}/...``: every read is audited with its reason, and
the one change support may make is a restore, planned here and written by the mutation script.

The reason for a read travels in the ``X-Support-Reason`` header (percent-encoded UTF-8), not
in the query string: access logs keep URLs, and a reason may name a customer's request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from starlette.requests import Request

from cartsync import wire
from cartsync.domain.principal import Owner, Principal, Role
from cartsync.domain.restore import OutOfReach, state_at
from cartsync.errors import Conflict, Forbidden, InvalidInput
from cartsync.storage.store import now_iso
from cartsync.storage.support import SupportLog, SupportRead
from cartsync.web.services import Services

if TYPE_CHECKING:  # commands.py's table names the functions below
    from cartsync.web.commands import Pricer

REASON_HEADER = "X-Support-Reason"
REASON_MAX = 500
RESTORE = "restore_cart"
"""The one command support may run (web/commands.py)."""


def support_log(services: Services) -> SupportLog:
    return SupportLog(services.store.redis, services.settings.customer_data_ttl_s)


def reason_of(request: Request) -> str:
    """The read's reason, required: a look at a customer's data must say why."""
    raw = request.headers.get(REASON_HEADER.lower(), "")
    reason = unquote(raw, errors="strict").strip() if raw else ""
    if not reason or len(reason) > REASON_MAX:
        raise InvalidInput(
            f"support reads need a reason: the {REASON_HEADER} header, 1 to {REASON_MAX} "
            "characters (percent-encode anything outside ASCII)",
            code="reason_required",
            field=REASON_HEADER,
        )
    return reason


async def admit(
    services: Services, principal: Principal, owner: Owner, operation: str, request: Request
) -> None:
    """Support reads (audited) and restores; any other request by support is refused."""
    if principal.role is not Role.SUPPORT:
        return
    if request.method not in ("GET", "HEAD"):
        if operation == RESTORE:
            return  # the body's reason goes into the cart.restored event
        raise Forbidden("support tokens read and restore; they change nothing else")
    try:
        reason = reason_of(request)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{REASON_HEADER} must be percent-encoded UTF-8", code="bad_header", field=REASON_HEADER
        ) from exc
    what = f"{request.method} {request.url.path}"
    read = SupportRead(at=now_iso(), agent=principal.subject, reason=reason, what=what)
    await support_log(services).record_read(owner, read)


def restore_body(b: wire.RestoreCart, p: Mapping[str, str]) -> dict[str, Any]:
    reason = b.reason.strip()
    if not reason:
        raise InvalidInput("a restore needs a reason", code="reason_required", field="reason")
    return {"rev": b.rev, "reason": reason, "with_wishlists": b.wishlists}


async def plan_restore(b: wire.RestoreCart, p: Mapping[str, str], pricer: Pricer) -> dict[str, Any]:
    """The state at ``b.rev`` (domain/restore.py), planned at the current revision, which the
    script checks is still current when it writes (cart_busy otherwise)."""
    if pricer.role is not Role.SUPPORT:
        raise Forbidden("only support tokens restore carts")
    basis = await SupportLog(pricer.store.redis, 0).basis(pricer.owner)
    if not isinstance(b.epoch, msgspec.UnsetType) and b.epoch != basis.epoch:
        raise Conflict(
            "this customer's data started over since (erased, expired or lost): "
            f"revision {b.rev} of epoch {b.epoch} no longer exists",
            code="epoch_mismatch",
            field="epoch",
        )
    try:
        state = state_at(b.rev, basis.rev, basis.log_first, basis.entries)
    except OutOfReach as exc:
        raise InvalidInput(exc.message, code="restore_out_of_reach", field="rev") from exc
    lists = state if b.wishlists else basis.now
    out: dict[str, Any] = {
        "at_rev": basis.rev,
        "note": state.note,
        "lines": state.payload_lines(),
        "wishlists": lists.payload_wishlists(),
    }
    return out
