"""The names of the live protocol: subprotocols, close codes, and reading a client's frame.

Kept apart from the endpoint and the session so both (and the AsyncAPI document, which lists
every close code named here) share one definition. Docs: docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.websockets import WebSocketDisconnect

from cartsync import wire
from cartsync.errors import InvalidInput
from cartsync.web.inputs import decode_strict

SUBPROTOCOL = "cartsync.v1"
BEARER_PREFIX = "bearer."
GRANT_PREFIX = "grant."

GRANT_ENDED = 4403
"""Private-use close code: the customer revoked the staff grant, or it expired."""
TOKEN_EXPIRED = 4401
"""Private-use close code: the socket's token expired (no fresh ``auth`` came in time)."""

# Close codes (RFC 6455 and the IANA registry).
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

_frames = msgspec.json.Decoder(wire.ClientFrame)


class Close(Exception):
    """End the session with this close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode_frame(message: Any) -> wire.Frame:
    """A client's frame from an ASGI receive message, or the close its fault calls for."""
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise Close(UNSUPPORTED_DATA, "binary frames are not part of the protocol")
    try:
        frame: wire.Frame = decode_strict(text, _frames)
    except InvalidInput as exc:
        if exc.code == "malformed_json":
            raise Close(INVALID_PAYLOAD, "message is not valid JSON") from exc
        raise Close(POLICY_VIOLATION, f"invalid message: {exc.message}"[:120]) from exc
    return frame
