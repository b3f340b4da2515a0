"""Version-pinned corrections to Hypercorn's websocket handling, installed by ``cartsync serve``.

Hypercorn builds each websocket's wsproto ``Connection`` in ``protocol/ws_stream.py`` and offers
no setting to change how. When wsproto refuses a frame (invalid UTF-8 in a text frame, a bad
opcode or reserved bit), it reports the failure as a ``CloseConnection`` with the right code
(1007, 1002) but leaves the connection OPEN, and Hypercorn answers a close frame only in state
REMOTE_CLOSING: so it drops the TCP connection and the client sees 1006. RFC 6455 (7.1.7) wants
the connection failed with a close frame of that code. ``_AnsweringConnection`` treats such a
failure as the peer's close, which Hypercorn then answers.

``install`` refuses to run against a Hypercorn whose stream no longer builds wsproto's
``Connection`` by that name, so an upgrade that would silently drop the fix fails loudly (and
``tests/test_hypercorn_hooks.py`` fails with it).
"""

from __future__ import annotations

from collections.abc import Generator

from hypercorn.protocol import ws_stream
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event


class _AnsweringConnection(Connection):
    """A wsproto connection whose refused frames are answered with a close frame."""

    def events(self) -> Generator[Event, None, None]:
        for event in super().events():
            if isinstance(event, CloseConnection) and self.state is ConnectionState.OPEN:
                # Only a parse failure yields a close in state OPEN (a close frame from the
                # peer moves the state first): answer it as if the peer had sent it.
                self._state = ConnectionState.REMOTE_CLOSING
            yield event


def install() -> None:
    """Make Hypercorn's websocket streams answer refused frames with a close frame."""
    current = getattr(ws_stream, "Connection", None)
    if current is _AnsweringConnection:
        return
    if current is not Connection:
        raise RuntimeError(
            "hypercorn.protocol.ws_stream no longer builds wsproto.Connection; "
            "cartsync.web.hypercorn_hooks needs updating for this Hypercorn version"
        )
    setattr(ws_stream, "Connection", _AnsweringConnection)  # noqa: B010 - no typed name to assign


def installed() -> bool:
    return getattr(ws_stream, "Connection", None) is _AnsweringConnection
