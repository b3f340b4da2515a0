"""``GET /v1/ws``: the handshake, authentication and the close; the session is in session.py.

Docs: docs/protocol.md (and ``GET /asyncapi.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from cartsync import wire
from cartsync.domain.consent import Grant, utc_now
from cartsync.domain.principal import Owner, Principal, own_data
from cartsync.errors import CartsyncError, StoreUnavailable
from cartsync.web.live_protocol import (
    BEARER_PREFIX,
    GOING_AWAY,
    GRANT_ENDED,
    GRANT_PREFIX,
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    SUBPROTOCOL,
    TRY_AGAIN_LATER,
    Close,
    decode_frame,
)
from cartsync.web.logs import log_unexpected
from cartsync.web.services import Services
from cartsync.web.session import Session

log = logging.getLogger("cartsync.live")

_CLOSE_TIMEOUT_S: Final = 1.0
_DRAIN_MAX: Final = 10_000
PATH: Final = "/v1/ws"


async def asgi_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The endpoint as a plain ASGI app (app.py routes the live socket to it directly)."""
    await websocket_endpoint(WebSocket(scope, receive, send))


async def websocket_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    origin = websocket.headers.get("origin")
    allowed = services.settings.ws_origins
    if origin is not None and allowed and origin not in allowed:
        # Refused before the handshake completes: the browser sees a failed connection (403).
        await websocket.close(POLICY_VIOLATION, "origin not allowed")
        return
    offered = websocket.scope.get("subprotocols", [])
    token = next((p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)), None)
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        if services.draining.is_set():
            raise Close(GOING_AWAY, "server shutting down; reconnect")
        principal, valid_until = await _authenticate(websocket, services, token)
        del token  # a live socket keeps no copy of its bearer token
        grant_id = next(
            (p[len(GRANT_PREFIX) :] for p in offered if p.startswith(GRANT_PREFIX)), None
        )
        grant: Grant | None = None
        if grant_id is not None:
            grant = await services.store.grant(grant_id)
            if grant is None or not grant.allows(principal, utc_now()):
                raise Close(GRANT_ENDED, "grant ended or not yours")
            owner = Owner.parse(grant.owner)
        else:
            owner = own_data(principal)
        if services.hub.consumer_count(owner.id) >= services.settings.ws_max_per_owner:
            raise Close(POLICY_VIOLATION, "too many live connections for this customer")
        services.metrics.sockets.inc()
        try:
            await Session(websocket, services, principal, owner, grant, valid_until).run()
        finally:
            services.metrics.sockets.dec()
    except Close as close:
        await _close(websocket, close.code, close.reason)
    except StoreUnavailable:
        await _close(websocket, TRY_AGAIN_LATER, "store unavailable; retry shortly")
    except CartsyncError as exc:
        await _close(websocket, POLICY_VIOLATION, exc.message)
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # one JSON log line and a 1011, never a dropped connection
        log_unexpected(log, "live socket failed", exc)
        await _close(websocket, INTERNAL_ERROR, "internal error; reconnect with since")


async def _authenticate(
    websocket: WebSocket, services: Services, token: str | None
) -> tuple[Principal, float]:
    if token is None:
        try:
            first = await asyncio.wait_for(
                websocket.receive(), timeout=services.settings.ws_auth_timeout_s
            )
        except TimeoutError as exc:
            raise Close(POLICY_VIOLATION, "no auth message within the time allowed") from exc
        frame = decode_frame(first)
        if not isinstance(frame, wire.AuthFrame):
            raise Close(POLICY_VIOLATION, "the first message must be auth")
        token = frame.token
    return await services.verifier.verify_until(token)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send the close frame, then read what the client had in flight until its close comes.

    Both bounded in time (a peer that stopped reading never takes the frame). The reading
    matters: Hypercorn hands each message that arrives to the app's queue and, once that is
    full, stops reading the connection until the app takes one, so a client that sent a burst
    before our close would never get its own close frame read, nor the connection ended.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await websocket.close(code, reason[:120])  # a close reason is at most 123 bytes
            for _ in range(_DRAIN_MAX):
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    return
