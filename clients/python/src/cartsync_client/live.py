"""``Subscription``: one owner's changes over ``/v1/ws``, in revision order, across reconnects.

The socket is a means, the revision is the truth: whatever happens to the connection, the
subscription resumes with ``sync`` from the last revision it handed to the caller, drops what it
already handed over, and asks again when a revision is missing. So the caller sees every
revision exactly once, in order, or a ``Snapshot`` that replaces everything before it.

A background task owned by the subscription reads the socket (answering the server's pings and
resolving ``send_op`` calls) and buffers updates for the caller; leaving ``async with`` cancels
it. When the buffer is full the task stops reading; the server then drops the connection (1013)
and the subscription resumes from the log once the caller has caught up.

An event of a type this client does not know (a newer server) is never handed over: the
subscription asks for a snapshot instead (``sync`` without ``since``).

Tokens: the server closes a socket when its token runs out (4401) unless it was sent a fresh
one (``auth``) before ``hello.expires_at``. With a token provider the subscription does that by
itself, shortly before; and a socket closed for its token (4401, or 1008 for a refused one)
asks the provider again and reconnects, keeping its revision and waiting ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from cartsync_client.backoff import Backoff
from cartsync_client.errors import CartsyncError, SessionClosed, Unavailable, error_for
from cartsync_client.events import EVENT_TYPES
from cartsync_client.frames import (
    PONG,
    AckFrame,
    Authenticated,
    ErrorFrame,
    EventFrame,
    Hello,
    NackFrame,
    Ping,
    ServerFrame,
    SnapshotFrame,
    encoder,
    server_frames,
)
from cartsync_client.gate import RevisionGate
from cartsync_client.models import Ack, Event, Snapshot, Update
from cartsync_client.tokens import TokenProvider, TokenSource

__all__ = ["FATAL_CLOSE_CODES", "PROTOCOL", "Subscription", "websocket_url"]

log = logging.getLogger("cartsync_client.live")

PROTOCOL = "cartsync.v1"
"""The live protocol this client speaks: the websocket subprotocol it offers."""
USER_AGENT = "cartsync-client-python/1.0"
GRANT_ENDED = 4403
"""A staff member's grant was revoked or expired."""
TOKEN_EXPIRED = 4401
"""The socket's token ran out before a fresh one came (``auth``)."""
RENEW_BEFORE_S = 60.0
"""A fresh token is sent this long before the socket's expires (a quarter of what is left, if
less): time for the provider to answer, and for clocks that differ a little."""
FATAL_CLOSE_CODES = frozenset({1003, 1007, 1008, 1009, GRANT_ENDED})
"""Closes that another connection would only repeat: a refused token or a message we got wrong.
Every other close (1001 shutdown, 1013 try later, 1006 a dropped connection...) reconnects; a
1008 for the token reconnects once with a token from the provider."""

HELLO_TIMEOUT_S = 15.0
"""The server says hello once its live listener is ready (it gives up after 5 s itself)."""
RESYNC_AFTER_S = 5.0
"""A gap still open this long after asking for it is asked for again."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""A snapshot of a full cart and wishlists can pass websockets' default 1 MiB."""


def websocket_url(base_url: str) -> str:
    """``ws(s)://.../v1/ws`` for an ``http(s)://`` service URL; the token never goes in it."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/v1/ws"
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + "/v1/ws"
    raise ValueError(f"the service URL must start with http:// or https://: {base_url!r}")


def refused_token(code: int, reason: str) -> bool:
    """A close the token caused: it ran out (4401), or was refused (1008, and the service's
    reason says so: expired, bad signature...)."""
    return code == TOKEN_EXPIRED or (code == 1008 and reason.startswith("token"))


class _PendingOp:
    __slots__ = ("frame", "future")

    def __init__(self, frame: str, future: asyncio.Future[Ack]) -> None:
        self.frame = frame
        self.future = future


class Subscription:
    """Live updates of one owner: ``async with`` it, then ``async for update in it``.

    Yields a ``Snapshot`` first when started without ``since`` (and again whenever the server's
    event log cannot fill a gap), otherwise ``Event``s with consecutive revisions.
    """

    def __init__(
        self,
        base_url: str,
        token: str | TokenProvider | TokenSource,
        *,
        since: int | None = None,
        backoff: Backoff | None = None,
        device_id: str | None = None,
        grant_id: str | None = None,
        max_buffer: int = 1024,
        open_timeout: float = 10.0,
    ) -> None:
        self._url = websocket_url(base_url)
        self._tokens = token if isinstance(token, TokenSource) else TokenSource(token)
        self._grant = [Subprotocol("grant." + grant_id)] if grant_id else []
        self._headers = {"X-Device-Id": device_id} if device_id else {}
        self._backoff = backoff or Backoff(base=0.25, cap=10.0)
        self._open_timeout = open_timeout
        self._max_buffer = max(1, max_buffer)
        self._gate = RevisionGate(since, RESYNC_AFTER_S)
        self._updates: deque[Update] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._pending: dict[str, _PendingOp] = {}
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: CartsyncError | None = None
        self._done = False
        self._attempt = 0
        self._renewal: asyncio.Task[None] | None = None
        self._socket_token = ""
        """The token the open (or last) socket authenticated with."""
        self._refused: str | None = None
        """The token the last socket was closed for, until a socket is accepted again."""
        self.connections = 0
        """How many times a socket was opened and synced; more than 1 means it reconnected."""

    @property
    def rev(self) -> int | None:
        """The last revision handed to the caller (or the ``since`` it started from)."""
        return self._gate.rev

    @property
    def connected(self) -> bool:
        return self._ws is not None

    # Lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        if self._task is not None:
            raise RuntimeError("a Subscription is entered once")
        self._task = asyncio.create_task(self._run(), name=f"cartsync live {self._url}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and close the socket; ops still waiting raise ``Unavailable``."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            # Only the task's own cancellation is swallowed; ours (if any) still propagates.
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    def _finish(self, failure: CartsyncError | None = None) -> None:
        if failure is not None and self._failure is None:
            self._failure = failure
        self._done = True
        self._ws = None
        self._readable.set()
        error = self._failure or Unavailable(0, "closed", "the live subscription was closed")
        for op in self._pending.values():
            if not op.future.done():
                op.future.set_exception(error)

    # Reading ------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Update:
        if self._task is None:
            raise RuntimeError("use `async with client.subscribe() as live:` before iterating")
        while True:
            if self._updates:
                update = self._updates.popleft()
                self._writable.set()
                return update
            if self._done:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()

    async def _deliver(self, update: Update) -> None:
        while len(self._updates) >= self._max_buffer:
            self._writable.clear()
            await self._writable.wait()
        self._updates.append(update)
        self._readable.set()

    # Ops ----------------------------------------------------------------------------------

    async def send_op(
        self,
        name: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        op_id: str | None = None,
        if_match: int | None = None,
    ) -> Ack:
        """Run a change (a REST command's name, e.g. ``add_line``) over the socket.

        ``op_id`` is the change's Idempotency-Key (a new uuid4 unless given); it is resent
        unchanged after a reconnect, and the same id over REST is the same change, so a change
        whose answer was lost is applied at most once. Waits across reconnects (bound it with
        ``asyncio.timeout``); a ``nack`` raises its ``CartsyncError``.
        """
        if self._task is None:
            raise RuntimeError("use `async with client.subscribe() as live:` before send_op")
        if self._done:
            raise self._failure or Unavailable(0, "closed", "the live subscription was closed")
        op_id = op_id or uuid.uuid4().hex
        if op_id in self._pending:
            raise ValueError(f"op {op_id!r} is already waiting for its answer")
        frame: dict[str, Any] = {
            "type": "op",
            "id": op_id,
            "name": name,
            "params": dict(params or {}),
            "body": dict(body or {}),
        }
        if if_match is not None:
            frame["if_match"] = if_match
        op = _PendingOp(encoder.encode(frame).decode(), asyncio.get_running_loop().create_future())
        self._pending[op_id] = op
        try:
            ws = self._ws
            if ws is not None:
                # A socket that is closing now is replaced, and the new one resends the op.
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(op.frame)
            return await op.future
        finally:
            self._pending.pop(op_id, None)

    # The connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        failure: CartsyncError | None = None
        try:
            while True:
                token = await self._tokens.token()
                try:
                    await self._connect_once(token)
                except ConnectionClosed as exc:
                    close = exc.rcvd
                    if close is not None and refused_token(close.code, close.reason):
                        # A token refused right after a refresh is final: no loop of refusals.
                        token = self._socket_token
                        again = self._refused is not None
                        fresh = None if again else await self._tokens.refresh(token)
                        if fresh is None:
                            raise SessionClosed(close.code, close.reason) from exc
                        log.info("live socket closed for its token (%s); using a new one", close)
                        self._refused = token
                        continue
                    if close is not None and close.code in FATAL_CLOSE_CODES:
                        raise SessionClosed(close.code, close.reason) from exc
                    log.info("live socket closed (%s); reconnecting", close or "no close frame")
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if 400 <= status < 500 and status not in (408, 429):
                        raise error_for(status, f"http_{status}", "websocket refused") from exc
                    log.info("websocket handshake answered %s; retrying", status)
                except InvalidURI:
                    raise
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    log.info("cannot open the live socket (%r); retrying", exc)
                finally:
                    self._ws = None
                await asyncio.sleep(self._backoff.delay(self._attempt))
                self._attempt += 1
        except CartsyncError as exc:
            failure = exc
        except InvalidURI as exc:
            failure = CartsyncError(0, "invalid_url", str(exc))
        except Exception as exc:
            # A bug here must reach the caller's ``async for``, not end the iteration quietly.
            failure = CartsyncError(0, "client_error", f"live subscription failed: {exc!r}")
            failure.__cause__ = exc
        finally:
            self._finish(failure)

    async def _connect_once(self, token: str) -> None:
        self._socket_token = token
        async with connect(
            self._url,
            subprotocols=[Subprotocol(PROTOCOL), Subprotocol("bearer." + token), *self._grant],
            additional_headers=self._headers,
            user_agent_header=USER_AGENT,
            open_timeout=self._open_timeout,
            max_size=MAX_MESSAGE_BYTES,
            close_timeout=2,
        ) as ws:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await self._read(ws)
                while not isinstance(hello, Hello):
                    hello = await self._read(ws)  # nothing but hello (and pings) comes before it
            await self._send_sync(ws)
            self._refused = None
            self.connections += 1
            self._attempt = 0
            # From here send_op sends by itself; ops that were waiting are resent now.
            self._ws = ws
            for op in list(self._pending.values()):
                await ws.send(op.frame)
            self._renew_later(ws, hello.expires_at)
            try:
                await self._serve(ws)
            finally:
                self._renew_later(ws, None)

    async def _serve(self, ws: ClientConnection) -> None:
        """Handle the server's frames until the socket closes."""
        while True:
            frame = await self._read(ws)
            if isinstance(frame, EventFrame):
                await self._on_event(ws, frame.event)
            elif isinstance(frame, SnapshotFrame):
                cart = frame.cart
                self._gate.snapshot(frame.rev, epoch=cart.epoch, at=cart.updated_at)
                await self._deliver(Snapshot(frame.rev, frame.cart, frame.wishlists))
            elif isinstance(frame, AckFrame):
                ack = Ack(frame.id, frame.rev, frame.status, frame.result, frame.replayed)
                self._settle(frame.id, ack)
            elif isinstance(frame, NackFrame):
                e = frame.error
                self._settle(frame.id, error_for(None, e.code, e.message, e.field))
            elif isinstance(frame, Authenticated):
                self._renew_later(ws, frame.expires_at)
            elif isinstance(frame, ErrorFrame):
                log.warning("server error on the live socket: %s", frame.error.message)

    def _renew_later(self, ws: ClientConnection, expires_at: int | None) -> None:
        """Replace the task that sends a fresh token before the socket's runs out (None: none;
        the socket's end cancels it)."""
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if expires_at is not None and self._tokens.refreshable:
            renew = self._renew(ws, expires_at)
            self._renewal = asyncio.create_task(renew, name="cartsync token renewal")

    async def _renew(self, ws: ClientConnection, expires_at: int) -> None:
        left = expires_at - time.time()
        await asyncio.sleep(max(0.0, left - min(RENEW_BEFORE_S, left / 4)))
        current = self._socket_token
        try:
            fresh = await self._tokens.refresh(current)
        except Exception as exc:  # the provider's own failure; at expiry the socket reconnects
            log.warning("the token provider failed: %r", exc)
            return
        if fresh is None:
            return  # nothing newer yet: at expiry (4401) the provider is asked again
        self._socket_token = fresh
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encoder.encode({"type": "auth", "token": fresh}).decode())

    async def _read(self, ws: ClientConnection) -> ServerFrame | None:
        """The next frame; pings are answered here and unknown frames skipped (newer servers)."""
        message = await ws.recv()
        try:
            frame: ServerFrame = server_frames.decode(message)
        except msgspec.DecodeError as exc:
            log.debug("skipping a frame this client does not know: %s", exc)
            return None
        if isinstance(frame, Ping):
            await ws.send(PONG)
        return frame

    async def _send_sync(self, ws: ClientConnection, *, snapshot: bool = False) -> None:
        """Resume from the gate's revision, or (``snapshot``) ask for the whole state."""
        sync: dict[str, Any] = {"type": "sync"}
        if self._gate.rev is not None and not snapshot:
            sync["since"] = self._gate.rev
            if self._gate.epoch is not None:
                sync["epoch"] = self._gate.epoch
            if self._gate.at is not None:
                sync["at"] = self._gate.at
        self._gate.sync_sent(asyncio.get_running_loop().time())
        await ws.send(encoder.encode(sync).decode())

    async def _on_event(self, ws: ClientConnection, event: Event) -> None:
        now = asyncio.get_running_loop().time()
        known = event.type in EVENT_TYPES
        verdict = self._gate.event(event.rev, now, epoch=event.epoch, at=event.at, known=known)
        if verdict == "deliver":
            await self._deliver(event)
        elif verdict == "resync":
            log.info("gap before rev %s (have %s); syncing again", event.rev, self._gate.rev)
            await self._send_sync(ws)
        elif verdict == "snapshot":
            log.info(
                "event type %r at rev %s is new to this client; asking for a snapshot",
                event.type,
                event.rev,
            )
            await self._send_sync(ws, snapshot=True)

    def _settle(self, op_id: str, outcome: Ack | CartsyncError) -> None:
        op = self._pending.get(op_id)
        if op is None or op.future.done():
            return  # an answer to a resent op that was already answered
        if isinstance(outcome, CartsyncError):
            outcome.idempotency_key = op_id
            op.future.set_exception(outcome)
        else:
            op.future.set_result(outcome)
