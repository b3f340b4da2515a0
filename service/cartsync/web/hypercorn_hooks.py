"""Version-pinned hooks into Hypercorn's websocket handling, installed by ``cartsync serve``.

Hypercorn builds each websocket's wsproto ``Connection`` in ``protocol/ws_stream.py`` and offers
no setting to change how. When wsproto refuses a frame (invalid UTF-8 in a text frame, a bad
opcode or reserved bit), it reports the failure as a ``CloseConnection`` with the right code
(1007, 1002) but leaves the connection OPEN, and Hypercorn answers a close frame only in state
REMOTE_CLOSING: so it drops the TCP connection and the client sees 1006. RFC 6455 (7.1.7) wants
the connection failed with a close frame of that code. ``_AnsweringConnection`` treats such a
failure as the peer's close, which Hypercorn then answers.

Hypercorn also accepts permessage-deflate whenever a client offers it (every browser does),
with 15-bit windows and a compressor kept per socket for its whole life: most of an idle
socket's memory (hypercorn#307 asks for a setting). ``CARTSYNC_WS_COMPRESSION`` decides:
``off`` declines the offer; ``on`` accepts it with small windows, a small zlib memory level and
no context kept between messages, so an idle socket holds no zlib state at all.

It also closes a connection the way a server that sends close frames must (RFC 6455 7.1.1):
its FIN first, then, for half a second at most, the peer's, before the socket is closed.
Hypercorn closes at once, and a peer whose bytes were still unread got a TCP reset, which
made it discard the close frame it had not read yet (1006 instead of the code sent).

Fan-out: one event goes to every local socket of its owner, and the usual send (Starlette,
Hypercorn's stream, wsproto's framing, the connection's send lock and drain) costs several
times the one transport write it ends in. On an HTTP/1.1 websocket without permessage-deflate a
server frame depends on nothing but its payload, so it can be built once per event
(``text_frame``) and written to each transport as is: ``FramingStream`` offers the app that
write in the scope's extensions (``FRAMES``). It writes only when nothing is in the way (the
stream open, no write under way, nothing still buffered for the peer) and says so; otherwise
the caller takes the usual path, whose drain and send timeout bound a slow peer.

``install`` refuses to run against a Hypercorn whose stream no longer builds wsproto's
``Connection`` and ``PerMessageDeflate`` by those names, or whose HTTP/1.1 protocol no longer
builds ``WSStream``, so an upgrade that would silently drop a hook fails loudly (and
``tests/test_hypercorn_hooks.py`` fails with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Callable, Generator
from typing import Literal, Protocol

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol import h11, ws_stream
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.typing import WebsocketAcceptEvent
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event, Message
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, Opcode, RsvBits

Compression = Literal["off", "on"]
WINDOW_BITS = 11
"""2 KiB windows: a 200-line snapshot (64 KB of JSON) still shrinks by 94 % (15 bits: 94.5 %)."""
MAX_MESSAGE = 64 * 1024
"""The largest message a client may send (OWASP's suggestion); Hypercorn's default is 16 MiB."""
MESSAGE_TOO_BIG = 1009
TOO_BIG_REASON = "message over 64 KiB"
MEM_LEVEL = 4
"""zlib's hash memory 8 KiB instead of 128 KiB, for 3.7 KB instead of 3.6 KB on that snapshot."""


_CLOSE_SENT = frozenset({ConnectionState.LOCAL_CLOSING, ConnectionState.CLOSED})


class _AnsweringConnection(Connection):
    """A wsproto connection whose refused frames are answered with a close frame, that says
    why it closes for size, and that drops what may no longer be sent once it is closing."""

    max_message = MAX_MESSAGE
    """Set by ``install``; the same as Hypercorn's ``websocket_max_message_size``."""
    _message_size = 0

    def events(self) -> Generator[Event, None, None]:
        for event in super().events():
            if isinstance(event, Message) and self.state is ConnectionState.OPEN:
                # An oversize message fails the connection here, like a parse failure:
                # Hypercorn's own check closes 1009 but then stops at every further piece
                # of the message, never reads the client's close, and never ends the TCP
                # connection or tells the app.
                self._message_size += len(event.data)
                if self._message_size > self.max_message:
                    event = CloseConnection(code=MESSAGE_TOO_BIG, reason=TOO_BIG_REASON)
                elif event.message_finished:
                    self._message_size = 0
            if isinstance(event, CloseConnection) and self.state is ConnectionState.OPEN:
                # Only a failure yields a close in state OPEN (a close frame from the peer
                # moves the state first): answer it as if the peer had sent it.
                self._state = ConnectionState.REMOTE_CLOSING
                yield event
                return
            yield event

    def send(self, event: Event) -> bytes:
        if isinstance(event, CloseConnection) and self.state in _CLOSE_SENT:
            # Hypercorn closes 1009 again for every further piece of an oversize message
            # that is still arriving; wsproto refuses a second close with an exception in the
            # middle of Hypercorn's read loop, and the connection was never ended.
            return b""
        if isinstance(event, CloseConnection) and event.code == MESSAGE_TOO_BIG:
            if not event.reason:
                # Hypercorn closes an oversize message itself, with no reason.
                event = CloseConnection(code=MESSAGE_TOO_BIG, reason=TOO_BIG_REASON)
        elif not isinstance(event, CloseConnection) and self.state is not ConnectionState.OPEN:
            # Hypercorn answers a ping that arrives after our close frame with a pong, which
            # wsproto refuses with an exception in the middle of Hypercorn's read loop: the
            # connection then never closed, or closed with a reset. Nothing more may be sent.
            return b""
        return super().send(event)


class DeclinedDeflate(PerMessageDeflate):
    """Never agrees to compress: the handshake answers without the extension."""

    def accept(self, offer: str) -> None:
        return None


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate within a bounded memory: ``WINDOW_BITS`` windows both ways (where
    the client lets us choose its window), ``MEM_LEVEL``, and no context takeover either way,
    so the zlib objects live for one message and an idle socket holds none."""

    def __init__(self) -> None:
        super().__init__(client_no_context_takeover=True, server_no_context_takeover=True)

    def accept(self, offer: str) -> str | None:
        params = [p.strip() for p in offer.split(";")[1:]]
        server_bits = WINDOW_BITS
        for param in params:
            name, _, value = (part.strip() for part in param.partition("="))
            if name == "server_max_window_bits" and value:
                if not value.isdigit() or not 8 <= int(value) <= 15:
                    return None  # RFC 7692: an invalid offer is declined
                server_bits = min(server_bits, max(9, int(value)))
        answer = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            f"server_max_window_bits={server_bits}",
        ]
        self.server_max_window_bits = server_bits
        if any(p.split("=")[0].strip() == "client_max_window_bits" for p in params):
            answer.append(f"client_max_window_bits={WINDOW_BITS}")
            self.client_max_window_bits = WINDOW_BITS
        self._enabled = True
        return "; ".join(answer)

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if self._compressor is None and opcode in (Opcode.TEXT, Opcode.BINARY):
            # wsproto would build it with zlib's default memory level (128 KiB of hash).
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.server_max_window_bits,
                MEM_LEVEL,
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)


_DEFLATE: dict[Compression, Callable[[], PerMessageDeflate]] = {
    "off": DeclinedDeflate,
    "on": BoundedDeflate,
}


LINGER_S = 0.5
"""Longest wait, after our FIN, for the peer's, before the socket is closed."""


async def _lingering_close(self: TCPServer) -> None:
    """Close as servers that send a close frame must: FIN first, then wait (briefly) for the
    peer's FIN before closing the socket. Closing with the peer's bytes still unread makes
    the kernel answer with a reset, which discards our close frame at the peer (it sees 1006):
    it happened to clients that sent more frames after one the server refused."""
    with contextlib.suppress(NotImplementedError, OSError, RuntimeError):
        self.writer.write_eof()
    reader = self.reader
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_S):
            # Nothing to wait on but the state of Hypercorn's own reader, whose task consumes
            # what still arrives.
            while not reader.at_eof() and not self.writer.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    await _ORIGINAL_CLOSE(self)


_ORIGINAL_CLOSE = TCPServer._close

FRAMES = "cartsync.frames"
"""The scope extension under which a websocket offers ``FrameWriter`` (absent: send as usual)."""


class FrameWriter(Protocol):
    def write_frame(self, frame: bytes) -> bool:
        """Write ``frame`` (from ``text_frame``) now and say True, or write nothing and say
        False: the caller then sends the message the usual way."""


def text_frame(payload: bytes) -> bytes:
    """One whole text message as a server frames it (RFC 6455 5.2: FIN, opcode 1, no mask)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class FramingStream(WSStream):
    """Hypercorn's websocket stream, offering the app ``write_frame`` when the connection's
    frames need no state: HTTP/1.1 on an asyncio TCP server, no extension negotiated."""

    _send_lock: asyncio.Lock
    _transport: asyncio.WriteTransport

    async def _accept(self, message: WebsocketAcceptEvent) -> None:
        await super()._accept(message)
        protocol = getattr(self.send, "__self__", None)
        server = getattr(getattr(protocol, "send", None), "__self__", None)
        if (
            isinstance(protocol, H11Protocol)
            and isinstance(server, TCPServer)
            and not any(ext.enabled() for ext in self.connection._proto.extensions)
        ):
            # Looked up once: the fan-out writes through them for every event.
            self._send_lock = server.send_lock
            self._transport = server.writer.transport
            extensions: dict[str, object] = self.scope["extensions"]  # type: ignore[assignment]
            extensions[FRAMES] = self

    def write_frame(self, frame: bytes) -> bool:
        """Write at once when nothing is in the way: the stream and its wsproto connection
        open, no write holding the connection's send lock (so no frame can come between),
        nothing still buffered for the peer (a peer that reads slowly is left to the usual
        path, which waits in ``drain`` under the sender's timeout)."""
        if (
            self.closed
            or self.state is not ASGIWebsocketState.CONNECTED
            or self.connection.state is not ConnectionState.OPEN
        ):
            return False
        transport = self._transport
        if self._send_lock.locked() or transport.is_closing() or transport.get_write_buffer_size():
            return False
        try:
            transport.write(frame)
        except (RuntimeError, OSError):
            return False  # e.g. after write_eof: the usual path meets the same end and reports it
        return True


def install(compression: Compression = "off", max_message: int = MAX_MESSAGE) -> None:
    """Answer refused frames with a close frame; compress as ``compression`` says; close
    connections gracefully."""
    _AnsweringConnection.max_message = max_message
    if TCPServer._close is not _lingering_close:
        TCPServer._close = _lingering_close  # type: ignore[method-assign]
    for name, original, ours in (
        ("Connection", Connection, (_AnsweringConnection,)),
        ("PerMessageDeflate", PerMessageDeflate, tuple(_DEFLATE.values())),
    ):
        current = getattr(ws_stream, name, None)
        if current is not original and current not in ours:
            raise RuntimeError(
                f"hypercorn.protocol.ws_stream no longer builds wsproto's {name}; "
                "cartsync.web.hypercorn_hooks needs updating for this Hypercorn version"
            )
    if getattr(h11, "WSStream", None) not in (WSStream, FramingStream):
        raise RuntimeError(
            "hypercorn.protocol.h11 no longer builds ws_stream's WSStream; "
            "cartsync.web.hypercorn_hooks needs updating for this Hypercorn version"
        )
    setattr(ws_stream, "Connection", _AnsweringConnection)  # noqa: B010 - no typed name to assign
    setattr(ws_stream, "PerMessageDeflate", _DEFLATE[compression])  # noqa: B010
    setattr(h11, "WSStream", FramingStream)  # noqa: B010


def installed() -> bool:
    return (
        getattr(ws_stream, "Connection", None) is _AnsweringConnection
        and getattr(h11, "WSStream", None) is FramingStream
    )
