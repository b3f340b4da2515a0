"""The frames of protocol ``cartsync.v1`` this client reads, as msgspec Structs.

Tagged by ``type``; fields the client does not use are ignored, and a frame of a type it does
not know fails to decode and is skipped, so a newer server's additions do not break it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cartsync_client.models import Cart, Event, Wishlist

__all__ = [
    "PONG",
    "AckFrame",
    "Authenticated",
    "ErrorFrame",
    "EventFrame",
    "Hello",
    "NackFrame",
    "Ping",
    "Pong",
    "ServerFrame",
    "SnapshotFrame",
    "encoder",
    "server_frames",
]


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class Hello(msgspec.Struct, tag_field="type", tag="hello"):
    rev: int
    owner: str
    expires_at: int | None = None


class Authenticated(msgspec.Struct, tag_field="type", tag="authenticated"):
    expires_at: int


class SnapshotFrame(msgspec.Struct, tag_field="type", tag="snapshot"):
    rev: int
    cart: Cart
    wishlists: list[Wishlist]


class EventFrame(msgspec.Struct, tag_field="type", tag="event"):
    event: Event


class AckFrame(msgspec.Struct, tag_field="type", tag="ack"):
    id: str
    rev: int
    status: int
    result: dict[str, Any]
    replayed: bool = False


class NackFrame(msgspec.Struct, tag_field="type", tag="nack"):
    id: str
    error: ErrorDetail


class ErrorFrame(msgspec.Struct, tag_field="type", tag="error"):
    error: ErrorDetail


class Ping(msgspec.Struct, tag_field="type", tag="ping"):
    pass


class Pong(msgspec.Struct, tag_field="type", tag="pong"):
    pass


ServerFrame = (
    Hello
    | Authenticated
    | SnapshotFrame
    | EventFrame
    | AckFrame
    | NackFrame
    | ErrorFrame
    | Ping
    | Pong
)
server_frames = msgspec.json.Decoder(ServerFrame)
encoder = msgspec.json.Encoder()
PONG = '{"type":"pong"}'
