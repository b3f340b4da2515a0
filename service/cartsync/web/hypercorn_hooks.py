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

``install`` refuses to run against a Hypercorn whose stream no longer builds wsproto's
``Connection`` and ``PerMessageDeflate`` by those names, so an upgrade that would silently drop
a hook fails loudly (and ``tests/test_hypercorn_hooks.py`` fails with it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Generator
from typing import Literal

from hypercorn.protocol import ws_stream
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, Opcode, RsvBits

Compression = Literal["off", "on"]
WINDOW_BITS = 11
"""2 KiB windows: a 200-line snapshot (64 KB of JSON) still shrinks by 94 % (15 bits: 94.5 %)."""
MEM_LEVEL = 4
"""zlib's hash memory 8 KiB instead of 128 KiB, for 3.7 KB instead of 3.6 KB on that snapshot."""


class _AnsweringConnection(Connection):
    """A wsproto connection whose refused frames are answered with a close frame."""

    def events(self) -> Generator[Event, None, None]:
        for event in super().events():
            if isinstance(event, CloseConnection) and self.state is ConnectionState.OPEN:
                # Only a parse failure yields a close in state OPEN (a close frame from the
                # peer moves the state first): answer it as if the peer had sent it.
                self._state = ConnectionState.REMOTE_CLOSING
            yield event


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


def install(compression: Compression = "off") -> None:
    """Answer refused frames with a close frame; compress as ``compression`` says."""
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
    setattr(ws_stream, "Connection", _AnsweringConnection)  # noqa: B010 - no typed name to assign
    setattr(ws_stream, "PerMessageDeflate", _DEFLATE[compression])  # noqa: B010


def installed() -> bool:
    return getattr(ws_stream, "Connection", None) is _AnsweringConnection
