"""The AsyncAPI 3.0 document of ``GET /v1/ws``, served at ``GET /asyncapi.json``.

Generated from the frame types in ``wire.py``, the event catalogue in ``wire_events.py`` and the
op names of the command table, so it cannot describe frames the server does not know. The
close codes and subprotocols live here, beside the code that uses them (``web/live_protocol.py``);
docs/protocol.md is held to them by tests/test_asyncapi.py.
"""

from __future__ import annotations

import functools
from typing import Any, Final, NamedTuple

import msgspec
from msgspec import NODEFAULT, Raw, structs
from starlette.requests import Request
from starlette.responses import Response

from cartsync import __version__, wire
from cartsync.web import live_protocol as live
from cartsync.web.commands import BY_NAME
from cartsync.wire_events import EVENT_DATA, EventEnvelope

ASYNCAPI_VERSION: Final = "3.0.0"
CHANNEL: Final = "live"
_SCHEMAS: Final = "#/components/schemas/"


class FrameDoc(NamedTuple):
    key: str
    type: type[msgspec.Struct]
    summary: str


_SUMMARIES: Final = {
    "auth": "Authenticate: the first message of a socket opened without a bearer subprotocol.",
    "sync": "Where the client stands; answered by a snapshot or the missed events.",
    "op": "Run a change, as its REST route would; answered by ack or nack with the same id.",
    "ping": "Is the connection alive? Answered by pong.",
    "pong": "The answer to a server ping.",
    "hello": "Sent once, right after authentication.",
    "snapshot": "The whole state at rev; it replaces the client's.",
    "ack": "An op was applied (or had been: replayed).",
    "nack": "An op was refused; nothing changed.",
    "serverPing": "Every ping interval; answer with pong.",
    "serverPong": "The answer to a client ping.",
    "error": "In the wire types for a socket-level error; this server sends none (a refused op "
    "is a nack, a broken session a close code).",
}


def _tag(cls: object) -> str | None:
    config = getattr(cls, "__struct_config__", None)
    tag = getattr(config, "tag", None)
    return tag if isinstance(tag, str) and cls is not wire.Frame else None


def _summary(key: str, cls: type[msgspec.Struct]) -> str:
    doc = (cls.__doc__ or "").strip().split("\n")[0]
    return _SUMMARIES.get(key) or doc or f"The {key} frame."


def frames() -> tuple[list[FrameDoc], list[FrameDoc]]:
    """Every tagged struct in ``wire.py``: subclasses of ``Frame`` are the client's, the others
    the server's (keyed ``server<Tag>`` where the client has a frame of the same type)."""
    tagged = [(tag, cls) for cls in vars(wire).values() if (tag := _tag(cls)) is not None]
    client = [FrameDoc(t, c, _summary(t, c)) for t, c in tagged if issubclass(c, wire.Frame)]
    client_tags = {f.key for f in client}
    server = []
    for tag, cls in tagged:
        if not issubclass(cls, wire.Frame):
            key = "server" + tag.capitalize() if tag in client_tags else tag
            server.append(FrameDoc(key, cls, _summary(key, cls)))
    # The server answers a ping with the same frame a client answers one with.
    server.append(FrameDoc("serverPong", wire.PongFrame, _summary("serverPong", wire.PongFrame)))
    return client, server


class CloseCode(NamedTuple):
    code: int
    meaning: str
    client_action: str


MESSAGE_TOO_BIG: Final = 1009
"""Sent by Hypercorn for a message over ``websocket_max_message_size`` (cli.py: 64 KiB)."""

_CLOSE_MEANINGS: Final = {
    "GOING_AWAY": (
        "the server is shutting down, or the client was silent for three ping intervals",
        "reconnect and resume with since",
    ),
    "UNSUPPORTED_DATA": ("a binary frame", "send JSON text frames"),
    "INVALID_PAYLOAD": ("a message that is not valid JSON or UTF-8", "fix the client"),
    "POLICY_VIOLATION": (
        "bad, missing or expired token; a token without a live feed; no auth in time; an "
        "unknown message type or field, a wrong or out-of-range value, JSON nested too deeply; "
        "too many sockets for this owner",
        "do not retry as is: get a new token, fix the message, or close other sockets",
    ),
    "MESSAGE_TOO_BIG": ("a message over 64 KiB", "fix the client"),
    "INTERNAL_ERROR": ("a failure on the server's side", "reconnect with since"),
    "TRY_AGAIN_LATER": (
        "the client read too slowly, or live updates are unavailable",
        "reconnect with backoff and resume with since",
    ),
    "GRANT_ENDED": (
        "a staff socket's grant was revoked by the customer, has expired or is not its own",
        "stop; the customer hands off a new code",
    ),
    "TOKEN_EXPIRED": (
        "the socket's token expired and no fresh auth came before it did",
        "reconnect with a fresh token",
    ),
}


def close_codes() -> list[CloseCode]:
    """Every close code ``web/live_protocol.py`` names, and Hypercorn's 1009."""
    named = {"MESSAGE_TOO_BIG": MESSAGE_TOO_BIG}
    named |= {
        name: value
        for name, value in vars(live).items()
        if name.isupper() and isinstance(value, int) and 1000 <= value <= 4999
    }
    unknown = ("see docs/protocol.md", "see docs/protocol.md")
    return sorted(
        CloseCode(code, *_CLOSE_MEANINGS.get(name, unknown)) for name, code in named.items()
    )


SUBPROTOCOLS: Final = (
    (live.SUBPROTOCOL, "the protocol; the server selects it when offered"),
    (live.BEARER_PREFIX + "<token>", "the bearer token (JWT), for clients that cannot send auth"),
    (live.GRANT_PREFIX + "<grant id>", "a staff token follows the customer of this grant"),
)


def _describable(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """msgspec cannot write a ``Raw`` default into a schema: the same struct, that default
    decoded."""
    fields = structs.fields(cls)
    if not any(isinstance(f.default, Raw) for f in fields):
        return cls
    config = cls.__struct_config__
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in fields:
        if isinstance(f.default, Raw):
            spec.append((f.name, f.type, msgspec.json.decode(f.default)))
        elif f.default_factory is not NODEFAULT:
            spec.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        elif f.default is not NODEFAULT:
            spec.append((f.name, f.type, f.default))
        else:
            spec.append((f.name, f.type))
    return msgspec.defstruct(
        cls.__name__,
        spec,
        tag=config.tag,
        tag_field=config.tag_field,
        forbid_unknown_fields=config.forbid_unknown_fields,
        kw_only=True,
    )


_REPLIES: Final = {
    "auth": ("hello", "authenticated"),
    "op": ("ack", "nack"),
    "ping": ("serverPong",),
}
"""What the server answers a client frame with (a reply that ``wire.py`` lacks is left out)."""


def _pascal(key: str) -> str:
    return key[0].upper() + key[1:]


def _event_key(event_type: str) -> str:
    return "event_" + event_type.replace(".", "_")


def build() -> dict[str, Any]:
    """The document; plain JSON values."""
    client_frames, server_frames = frames()
    all_frames = [*client_frames, *server_frames]
    types: list[Any] = [_describable(f.type) for f in all_frames]
    types += [EventEnvelope, *EVENT_DATA.values()]
    refs, schemas = msgspec.json.schema_components(types, ref_template=_SCHEMAS + "{name}")
    by_type = dict(zip(types, refs, strict=False))
    client_schemas = {f.type.__name__ for f in client_frames}
    for name, schema in schemas.items():
        if name not in client_schemas:
            # Clients must ignore fields they do not know in server frames (protocol.md).
            schema.pop("additionalProperties", None)
    schemas["OpFrame"]["properties"]["name"]["enum"] = sorted(BY_NAME)

    messages: dict[str, Any] = {}
    for frame, type_ in zip(all_frames, types, strict=False):
        messages[frame.key] = {
            "name": frame.key,
            "title": schemas[type_.__name__]["properties"]["type"]["enum"][0],
            "summary": frame.summary,
            "contentType": "application/json",
            "payload": by_type[type_],
        }
    envelope = schemas.pop(EventEnvelope.__name__)
    for event_type, data_type in sorted(EVENT_DATA.items()):
        name = "Event_" + event_type.replace(".", "_")
        schema = msgspec.json.decode(msgspec.json.encode(envelope))
        schema["title"] = f"{event_type} event"
        schema["properties"]["type"] = {"const": event_type}
        schema["properties"]["data"] = by_type[data_type]
        schemas[name] = schema
        messages[_event_key(event_type)] = {
            "name": event_type,
            "title": f"event {event_type}",
            "summary": (data_type.__doc__ or f"One {event_type} event.").split("\n")[0],
            "contentType": "application/json",
            "payload": {
                "type": "object",
                "properties": {"type": {"const": "event"}, "event": {"$ref": _SCHEMAS + name}},
                "required": ["type", "event"],
            },
        }

    def msg(*keys: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{CHANNEL}/messages/{k}"} for k in keys]

    channel_ref = {"$ref": f"#/channels/{CHANNEL}"}
    event_keys = [_event_key(t) for t in sorted(EVENT_DATA)]
    operations: dict[str, Any] = {}
    for frame in client_frames:
        replies = [k for k in _REPLIES.get(frame.key, ()) if k in messages]
        reply = msg(*replies) if replies else None
        operations["receive" + _pascal(frame.key)] = _op(
            "receive", channel_ref, msg(frame.key), reply
        )
    for frame in server_frames:
        operations["send" + _pascal(frame.key)] = _op("send", channel_ref, msg(frame.key))
    operations["sendEvent"] = _op("send", channel_ref, msg(*event_keys))
    codes = close_codes()
    close_table = "\n".join(f"- {c.code}: {c.meaning}; {c.client_action}." for c in codes)
    protocols = "\n".join(f"- `{name}`: {why}" for name, why in SUBPROTOCOLS)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "cartsync live protocol",
            "version": __version__,
            "description": (
                "One owner's cart and wishlist events, live and in revision order, and changes "
                f"(`op`) the other way. Protocol `{live.SUBPROTOCOL}`; docs/protocol.md is the "
                "guide for people."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "`make run`; use wss behind TLS",
                "security": [{"$ref": "#/components/securitySchemes/bearerSubprotocol"}],
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/v1/ws",
                "title": "live",
                "description": f"Subprotocols:\n{protocols}\n\nClose codes:\n{close_table}",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Sec-WebSocket-Protocol": {
                                    "type": "string",
                                    "description": "Comma-separated: " + protocols,
                                },
                                "Origin": {
                                    "type": "string",
                                    "description": "checked against CARTSYNC_WS_ORIGINS",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
                "x-subprotocols": [{"name": n, "description": d} for n, d in SUBPROTOCOLS],
                "x-close-codes": [c._asdict() for c in codes],
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearerSubprotocol": {
                    "type": "httpApiKey",
                    "in": "header",
                    "name": "Sec-WebSocket-Protocol",
                    "description": (
                        f"Offer `{live.SUBPROTOCOL}` and `{live.BEARER_PREFIX}<token>`; or send "
                        "an `auth` frame first."
                    ),
                }
            },
        },
    }


@functools.cache
def document() -> bytes:
    """The encoded document, built on first use (never at import)."""
    return msgspec.json.encode(build())


async def asyncapi_json(request: Request) -> Response:
    return Response(document(), media_type="application/json")


def _op(
    action: str,
    channel: dict[str, str],
    messages: list[dict[str, str]],
    reply: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"action": action, "channel": channel, "messages": messages}
    if reply is not None:
        op["reply"] = {"channel": channel, "messages": reply}
    return op
