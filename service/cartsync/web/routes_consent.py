"""Consent hand-off: the customer shows a one-time code, a staff tablet claims it, the customer
sees and can revoke the grant that results."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta

import segno
from starlette.requests import Request
from starlette.responses import Response

from cartsync import wire
from cartsync.domain.consent import Grant, utc_now, valid_code
from cartsync.domain.model import Actor
from cartsync.domain.principal import Owner, Role
from cartsync.errors import Forbidden, NotFound
from cartsync.storage.store import WriteContext
from cartsync.web.endpoints import (
    Answer,
    Call,
    Endpoint,
    PublicRoute,
    json_response,
    mutation_response,
)
from cartsync.web.services import Services


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def tablet_link(base_url: str, code: str) -> str:
    """The store tablet page with the code: a tablet's camera app opens it, the page claims it.

    The code rides in the fragment, which browsers never send, so no server log keeps it.
    """
    return f"{base_url.rstrip('/')}/staff#code={code}"


def _qr_svg(text: str) -> str:
    buffer = io.BytesIO()
    # A full QR: phone cameras do not read the Micro QR segno picks for short texts.
    segno.make_qr(text, error="m").save(buffer, kind="svg", scale=6, border=2, xmldecl=False)
    return buffer.getvalue().decode()


async def create_handoff(call: Call[None]) -> Response:
    ttl = call.services.settings.handoff_ttl_s
    code = await call.services.store.create_handoff(call.owner, ttl)
    expires = utc_now() + timedelta(seconds=ttl)
    link = tablet_link(str(call.request.base_url), code)
    body = wire.Handoff(code=code, expires_at=_iso(expires), qr_svg=_qr_svg(link))
    return json_response(body, status=201)


async def list_grants(call: Call[None]) -> Response:
    now = utc_now()
    grants = [g for g in await call.services.store.grants(call.owner) if g.seconds_left(now) > 0]
    return json_response(wire.Grants(grants=grants))


async def revoke_grant(call: Call[None]) -> Response:
    grant_id = call.request.path_params["grant_id"]
    store = call.services.store
    if not any(g.id == grant_id for g in await store.grants(call.owner)):
        raise NotFound("no such grant", code="grant_not_found", field="grant_id")
    # Access ends the moment the lookup key is gone; the event then tells every device.
    await store.drop_grant(grant_id)
    return await call.mutate("grant_revoke", {"grant_id": grant_id})


async def claim_handoff(request: Request) -> Response:
    """A staff token turns a customer's code into a grant for that staff member and store."""
    services: Services = request.app.state.services
    principal = await services.authenticate(request)
    if principal.role is not Role.STAFF or principal.store is None:
        raise Forbidden("only staff tokens can claim a hand-off code")
    await services.limits.claim(principal.subject, principal.store)
    code = request.path_params["code"]
    owner_id = await services.store.take_handoff(code) if valid_code(code) else None
    if owner_id is None:
        raise NotFound("no such code, or it was used or expired", code="handoff_not_found")
    now = utc_now()
    grant = Grant(
        id=uuid.uuid4().hex,
        owner=owner_id,
        staff=principal.subject,
        store=principal.store,
        created_at=_iso(now),
        expires_at=_iso(now + timedelta(seconds=services.settings.grant_ttl_s)),
    )
    await services.store.put_grant(grant, services.settings.grant_ttl_s)
    actor = Actor(role=Role.STAFF.value, id=principal.subject, store=principal.store)
    await services.store.mutate(
        Owner.parse(owner_id), "grant_start", {"grant": grant}, WriteContext(actor)
    )
    return json_response(wire.GrantResult(grant=grant), status=201)


async def end_grant(request: Request) -> Response:
    """Staff: "Done with this customer" ends the caller's own grant now, in the owner's history.

    The customer revokes at ``DELETE /v1/grants/{grant_id}``; a shared store tablet must not
    leave a grant running for its remaining hour just because the employee walked away.
    """
    services: Services = request.app.state.services
    principal = await services.authenticate(request)
    if principal.role is not Role.STAFF:
        raise Forbidden("only the staff member of a grant ends it here; customers revoke it")
    await services.rate_limit(principal)
    grant_id = request.path_params["grant_id"]
    grant = await services.store.grant(grant_id)
    # Another employee's grant answers like a missing one: ids cannot be probed.
    if grant is None or not grant.allows(principal, utc_now()):
        raise NotFound("no such grant, or it has ended", code="grant_not_found", field="grant_id")
    await services.store.drop_grant(grant_id)
    actor = Actor(role=Role.STAFF.value, id=principal.subject, store=principal.store)
    result = await services.store.mutate(
        Owner.parse(grant.owner), "grant_revoke", {"grant_id": grant_id}, WriteContext(actor)
    )
    return mutation_response(result)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/handoffs",
        create_handoff,
        "A one-time code (digits, and a QR of the tablet page link with it) that lets a store "
        "employee see and edit this cart",
        response=wire.Handoff,
        status=201,
        staff=False,
    ),
    Endpoint(
        "GET", "/grants", list_grants, "Active staff grants", response=wire.Grants, staff=False
    ),
    Endpoint(
        "DELETE",
        "/grants/{grant_id}",
        revoke_grant,
        "Revoke a staff grant: the tablet loses access at once",
        response=wire.Removed,
        mutation=True,
        staff=False,
    ),
]


PUBLIC = [
    PublicRoute(
        "POST",
        "/v1/handoffs/{code}/claim",
        claim_handoff,
        "Staff token: turn a customer's hand-off code into a grant (rate limited per employee "
        "and store; a code works once)",
        {
            201: Answer("The grant; use it at /v1/grants/{grant_id}/...", wire.GrantResult),
            400: Answer("Malformed header", wire.ErrorBody),
            401: Answer("Missing or invalid token", wire.ErrorBody, headers=("WWW-Authenticate",)),
            403: Answer("Not a staff token with a store", wire.ErrorBody),
            404: Answer("No such code, or it was used or expired", wire.ErrorBody),
            429: Answer("Too many claims", wire.ErrorBody, headers=("Retry-After",)),
            503: Answer("Redis unreachable", wire.ErrorBody, headers=("Retry-After",)),
        },
        token=True,
    ),
    PublicRoute(
        "POST",
        "/v1/grants/{grant_id}/end",
        end_grant,
        'Staff token: end your own grant now ("Done with this customer"); the customer\'s '
        "devices get grant.revoked with you as its actor and the tablet's socket closes",
        {
            200: Answer("The grant is gone", wire.Removed),
            400: Answer("Malformed header", wire.ErrorBody),
            401: Answer("Missing or invalid token", wire.ErrorBody, headers=("WWW-Authenticate",)),
            403: Answer("Not a staff token", wire.ErrorBody),
            404: Answer("No such grant of yours, or it has ended", wire.ErrorBody),
            429: Answer("Too many requests", wire.ErrorBody, headers=("Retry-After",)),
            503: Answer("Redis unreachable", wire.ErrorBody, headers=("Retry-After",)),
        },
        token=True,
    ),
]
