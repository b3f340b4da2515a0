"""Privacy routes of one owner, and the public routes: guest tokens, health, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from cartsync import wire
from cartsync.auth.tokens import new_guest_subject
from cartsync.domain.principal import Role
from cartsync.errors import CartsyncError, Forbidden
from cartsync.storage.store import now_iso
from cartsync.web import support
from cartsync.web.endpoints import Answer, Call, Endpoint, PublicRoute, json_response
from cartsync.web.services import Services


async def export(call: Call[None]) -> Response:
    snap = await call.services.store.snapshot(call.owner, "all")
    reads = await support.support_log(call.services).reads(call.owner)
    body = wire.Export(
        owner=call.owner.id,
        exported_at=now_iso(),
        cart=snap.cart,
        wishlists=snap.wishlists,
        events=snap.events,
        support_reads=[wire.SupportRead(r.at, r.agent, r.reason, r.what) for r in reads],
    )
    return json_response(body, rev=snap.rev)


async def erase(call: Call[None]) -> Response:
    store = call.services.store
    for grant in await store.grants(call.owner):
        await store.drop_grant(grant.id)  # staff access ends with the data
    await store.erase(call.owner, call.actor)
    await support.support_log(call.services).forget(call.owner)
    return json_response(wire.Erased(erased=True))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/me/export",
        export,
        "Everything held for this owner",
        response=wire.Export,
        staff=False,
    ),
    Endpoint(
        "DELETE",
        "/me",
        erase,
        "Erase everything held for this owner",
        response=wire.Erased,
        staff=False,
    ),
]


async def issue_guest(request: Request) -> Response:
    """A signed guest token for an anonymous device, limited per client address."""
    services: Services = request.app.state.services
    await services.limits.guest_issue(services.client_address(request))
    if services.issuer is None:
        raise Forbidden("this deployment verifies tokens but holds no key to issue guest tokens")
    subject = new_guest_subject()
    ttl = services.settings.guest_token_ttl_s
    token = services.issuer.issue(Role.GUEST, subject, ttl_s=ttl)
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    body = wire.GuestToken(
        token=token,
        guest_id=subject,
        expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return json_response(body, status=201)


async def healthz(request: Request) -> Response:
    return json_response(wire.Health(status="ok"))


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        await services.store.ping()
    except CartsyncError as exc:
        return json_response(wire.Health(status="unavailable", detail=exc.message), status=503)
    waiting = [r.issuer for r in services.verifier.remote if not r.loaded.is_set()]
    if waiting:
        detail = "signing keys not loaded yet for issuer " + ", ".join(waiting)
        return json_response(wire.Health(status="unavailable", detail=detail), status=503)
    return json_response(wire.Health(status="ready"))


PUBLIC = [
    PublicRoute(
        "POST",
        "/v1/guest",
        issue_guest,
        "Issue a guest token for an anonymous device (rate limited per client address)",
        {
            201: Answer(
                "A guest token",
                wire.GuestToken,
                example={
                    "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
                    "guest_id": "g_2f6c1e0b9a8d4c7e",
                    "expires_at": "2026-12-30T12:00:00Z",
                },
            ),
            403: Answer("This deployment holds no key to issue tokens", wire.ErrorBody),
            429: Answer("Rate limited", wire.ErrorBody, headers=("Retry-After",)),
            503: Answer("Redis unreachable", wire.ErrorBody, headers=("Retry-After",)),
        },
    ),
    PublicRoute(
        "GET",
        "/healthz",
        healthz,
        "The process is up",
        {200: Answer("Up", wire.Health, example={"status": "ok"})},
    ),
    PublicRoute(
        "GET",
        "/readyz",
        readyz,
        "The process can reach Redis",
        {
            200: Answer("Ready", wire.Health, example={"status": "ready"}),
            503: Answer(
                "Redis unreachable (detail says why)",
                wire.Health,
                example={
                    "status": "unavailable",
                    "detail": "the cart store (Redis) is unreachable",
                },
            ),
        },
    ),
]
