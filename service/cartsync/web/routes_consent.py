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
from cartsync.web.endpoints import Answer, Call, Endpoint, PublicRoute, json_response
from cartsync.web.services import Services


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _qr_svg(code: str) -> str:
    buffer = io.BytesIO()
    # A full QR: phone cameras do not read the Micro QR segno picks for 8 digits.
    segno.make_qr(code, error="m").save(buffer, kind="svg", scale=6, border=2, xmldecl=False)
    return buffer.getvalue().decode()


async def create_handoff(call: Call[None]) -> Response:
    ttl = call.services.settings.handoff_ttl_s
    code = await call.services.store.create_handoff(call.owner, ttl)
    expires = utc_now() + timedelta(seconds=ttl)
    body = wire.Handoff(code=code, expires_at=_iso(expires), qr_svg=_qr_svg(code))
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


ENDPOINTS = [
    Endpoint(
        "POST",
        "/handoffs",
        create_handoff,
        "A one-time code (digits and QR) that lets a store employee see and edit this cart",
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
]
