"""``GET /v1/ws``: one owner's events, live and in revision order, plus ``op`` mutations.

A session delivers revisions strictly in order. Live events come from the hub; whenever a
revision is skipped, the hub resubscribed, or the client asks with ``sync``, the session reads
the owner's event log from the last revision it delivered, or sends a snapshot when the log no
longer reaches back that far. Docs: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from cartsync import wire
from cartsync.domain.consent import Grant, utc_now
from cartsync.domain.model import Actor
from cartsync.domain.principal import Owner, Principal, own_data
from cartsync.errors import (
    CartsyncError,
    Forbidden,
    InvalidInput,
    RevisionMismatch,
    StoreUnavailable,
)
from cartsync.storage.hub import RESYNC, Listener, Overflow
from cartsync.storage.store import WriteContext
from cartsync.web.commands import BY_NAME, Pricer, fingerprint
from cartsync.web.errors import status_of
from cartsync.web.inputs import decode_body, decode_strict
from cartsync.web.logs import log_unexpected
from cartsync.web.services import Services

log = logging.getLogger("cartsync.live")

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
_CLOSE_TIMEOUT_S: Final = 1.0
_PING: Final = b"ping"
"""Queued by the ping timer for the pump to send (events are JSON objects, never this)."""
_encoder = msgspec.json.Encoder()


class _RevokedData(msgspec.Struct):
    grant_id: str | None = None


class _Revocation(msgspec.Struct):
    type: str
    data: _RevokedData


_revocation = msgspec.json.Decoder(_Revocation)


class _EventHead(msgspec.Struct):
    rev: int
    epoch: str | None = None
    at: str | None = None


_event_head = msgspec.json.Decoder(_EventHead)


class Close(Exception):
    """End the session with this close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def event_frame(raw_event: bytes) -> bytes:
    """The frame for one logged event; the event's own JSON is passed through untouched."""
    return b'{"type":"event","event":' + raw_event + b"}"


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
        if services.hub.listener_count(owner.id) >= services.settings.ws_max_per_owner:
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
        frame = _decode(first)
        if not isinstance(frame, wire.AuthFrame):
            raise Close(POLICY_VIOLATION, "the first message must be auth")
        token = frame.token
    return await services.verifier.verify_until(token)


def _decode(message: Any) -> wire.Frame:
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


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send the close frame, bounded in time: a peer that stopped reading never takes it."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await websocket.close(code, reason[:120])  # a close reason is at most 123 bytes


class Session:
    """One authenticated socket of one owner.

    Two tasks: ``_receive`` reads the client, ``_pump`` writes events. Everything else (pings,
    silence, grant expiry, drain, a queue overflowing) is a loop timer or callback that ends
    the session through ``end``, so none of it waits behind a send to a peer that stopped
    reading. Ending cancels both tasks until they are done, within a bound: one cancel is not
    enough when it lands inside a Redis call that swallows it (see ``_finish``).
    """

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        principal: Principal,
        owner: Owner,
        grant: Grant | None = None,
        valid_until: float | None = None,
    ) -> None:
        self.grant = grant
        self.valid_until = valid_until
        """When the token the socket authenticated with stops being acceptable (Unix time)."""
        self.ws = websocket
        self.services = services
        self.store = services.store
        self.principal = principal
        self.owner = owner
        self.position: int | None = None
        """The last revision delivered; None until the client sent ``sync``."""
        self.wanted: wire.SyncFrame | None = None
        """A ``sync`` the client sent that is not answered yet."""
        self.epoch: str | None = None
        """The epoch ``position`` counts in."""
        self.position_at: str | None = None
        """When the change at ``position`` was made: tells it from another change that took
        its revision after a failover lost it."""
        self.listener: Listener | None = None
        self.last_heard = 0.0
        self._ending: asyncio.Future[Close | WebSocketDisconnect] | None = None
        self._ping: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._token_expiry: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Serve the socket until it ends; raise the ``Close`` to send, if any."""
        loop = asyncio.get_running_loop()
        settings = self.services.settings
        self.last_heard = loop.time()
        self._ending = loop.create_future()
        async with self.services.hub.listen(self.owner.id, self._overflowed) as listener:
            self.listener = listener
            try:
                await asyncio.wait_for(listener.ready.wait(), timeout=5)
            except TimeoutError as exc:
                raise Close(TRY_AGAIN_LATER, "live updates are unavailable; retry") from exc
            head = await self.store.history(self.owner, 0, 0)
            expires_at = None if self.valid_until is None else int(self.valid_until)
            hello = wire.Hello(
                rev=head.rev, owner=self.owner.id, epoch=head.epoch, expires_at=expires_at
            )
            await self.send(_encoder.encode(hello))
            self._ping = loop.call_later(settings.ws_ping_interval_s, self._tick)
            self._arm_token_expiry()
            if self.grant is not None:
                left = max(0.0, self.grant.seconds_left(utc_now()))
                self._expiry = loop.call_later(left, self.end, Close(GRANT_ENDED, "grant expired"))
            drain = self.services.on_drain(
                lambda: self.end(Close(GOING_AWAY, "server shutting down; reconnect"))
            )
            tasks = [
                asyncio.create_task(self._receive(), name="ws-receive"),
                asyncio.create_task(self._pump(), name="ws-pump"),
            ]
            for task in tasks:
                task.add_done_callback(self._task_ended)
            try:
                ending = await self._ending
            finally:
                drain()
                for timer in (self._ping, self._expiry, self._token_expiry):
                    if timer is not None:
                        timer.cancel()
                await _finish(tasks)
            raise ending

    def end(self, why: Close | WebSocketDisconnect) -> None:
        """End the session; the first reason given is the one the client gets."""
        if self._ending is not None and not self._ending.done():
            self._ending.set_result(why)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        failure = task.exception() or RuntimeError("the task returned; it should run until ended")
        if isinstance(failure, Close | WebSocketDisconnect):
            self.end(failure)
        elif isinstance(failure, StoreUnavailable):
            # Not 1008: the client did nothing wrong and should come back with since.
            self.end(Close(TRY_AGAIN_LATER, "store unavailable; reconnect with since"))
        elif isinstance(failure, CartsyncError):
            self.end(Close(POLICY_VIOLATION, failure.message))
        else:
            log_unexpected(log, f"live session task {task.get_name()} failed", failure)
            self.end(Close(INTERNAL_ERROR, "internal error; reconnect with since"))

    def _arm_token_expiry(self) -> None:
        if self._token_expiry is not None:
            self._token_expiry.cancel()
        if self.valid_until is not None:
            left = max(0.0, self.valid_until - time.time())
            self._token_expiry = asyncio.get_running_loop().call_later(
                left,
                self.end,
                Close(
                    TOKEN_EXPIRED, "token expired; send auth with a fresh token before expires_at"
                ),
            )

    async def _reauthenticate(self, token: str) -> None:
        """A fresh token for the same caller extends the socket; anything else ends it."""
        try:
            principal, valid_until = await self.services.verifier.verify_until(token)
        except CartsyncError as exc:
            raise Close(POLICY_VIOLATION, exc.message) from exc
        if principal != self.principal:
            raise Close(POLICY_VIOLATION, "auth must be for the caller the socket opened as")
        self.valid_until = valid_until
        self._arm_token_expiry()
        await self.send(_encoder.encode(wire.Authenticated(expires_at=int(valid_until))))

    def _overflowed(self) -> None:
        self.services.metrics.overflows.inc()
        self.end(Close(TRY_AGAIN_LATER, "too slow to keep up; reconnect with since"))

    def _tick(self) -> None:
        """Every ping interval: end a silent client, else queue a ping for the pump to send."""
        loop = asyncio.get_running_loop()
        interval = self.services.settings.ws_ping_interval_s
        if loop.time() - self.last_heard > 3 * interval:
            self.end(Close(GOING_AWAY, "no message or pong from the client; reconnect"))
            return
        assert self.listener is not None
        self.listener.offer(_PING)
        self._ping = loop.call_later(interval, self._tick)

    async def send(self, frame: bytes) -> None:
        """Send one frame, bounded in time: a peer that stopped reading ends the session.

        No lock: Hypercorn serialises writes per connection and wsproto builds each frame
        whole before the write, so frames from the two tasks never interleave.
        """
        try:
            async with asyncio.timeout(self.services.settings.ws_send_timeout_s):
                await self.ws.send_text(frame.decode())
        except TimeoutError as exc:
            self.services.metrics.overflows.inc()
            raise Close(TRY_AGAIN_LATER, "too slow to keep up; reconnect with since") from exc

    # Client to server --------------------------------------------------------------------

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = _decode(await self.ws.receive())
            self.last_heard = loop.time()
            if isinstance(frame, wire.SyncFrame):
                self.wanted = frame
                assert self.listener is not None
                self.listener.offer(RESYNC)
            elif isinstance(frame, wire.OpFrame):
                await self._op(frame)
            elif isinstance(frame, wire.PingFrame):
                await self.send(b'{"type":"pong"}')
            elif isinstance(frame, wire.AuthFrame):
                await self._reauthenticate(frame.token)

    async def _op(self, frame: wire.OpFrame) -> None:
        command = BY_NAME.get(frame.name)
        try:
            await self.services.rate_limit(self.principal)
            if command is not None and self.grant is not None and command.name == "checkout":
                raise Forbidden("checkout is the customer's and the shop's step, not staff's")
            if command is None:
                raise InvalidInput(f"unknown op {frame.name!r}", code="unknown_op", field="name")
            missing = [p for p in command.params if p not in frame.params]
            if missing:
                raise InvalidInput(
                    f"params needs {missing[0]}", code="invalid_field", field=missing[0]
                )
            params = {p: frame.params[p] for p in command.params}
            body: object = None
            if command.body is not None:
                # The REST body's decode, so an op and a request get the same errors.
                body = decode_body(bytes(frame.body), "application/json", command.body)
            ctx = WriteContext(
                actor=Actor(
                    role=self.principal.role.value,
                    id=self.principal.subject,
                    store=self.principal.store,
                ),
                idempotency_key=frame.id,
                fingerprint=fingerprint(command.method, command.path, params, body),
                expected_rev=frame.if_match,
            )
            pricer = Pricer(self.principal.role, self.owner, self.services.pricing, self.store)
            payload = await command.payload(body, params, pricer)
            result = await self.store.mutate(self.owner, command.op, payload, ctx)
        except CartsyncError as exc:
            detail = wire.ErrorDetail(code=exc.code, message=exc.message, field=exc.field)
            current = exc.current_rev if isinstance(exc, RevisionMismatch) else None
            await self.send(_encoder.encode(wire.Nack(id=frame.id, error=detail, rev=current)))
            if status_of(exc) == 503:
                log.warning("op %s refused: store unavailable", frame.name)
            return
        ack = wire.Ack(
            id=frame.id,
            rev=result.rev,
            status=result.status,
            result=msgspec.Raw(result.body),
            replayed=result.replayed,
        )
        await self.send(_encoder.encode(ack))

    # Server to client --------------------------------------------------------------------

    async def _pump(self) -> None:
        assert self.listener is not None
        while True:
            try:
                frame = await self.listener.get()
            except Overflow:
                await asyncio.Event().wait()  # ``_overflowed`` has ended the session already
            if frame is _PING:
                await self.send(_encoder.encode(wire.ServerPing()))
                continue
            if frame == RESYNC or self.wanted is not None:
                await self._catch_up()
                continue
            if self.position is None:
                continue
            head = _event_head.decode(frame)
            fresh = self.position == 0 and self.epoch is None  # no data yet: any epoch is new
            if head.epoch != self.epoch and not fresh:
                await self._snapshot()  # the owner's data restarted (erased, expired, lost)
                continue
            if head.rev == self.position and head.at != self.position_at:
                await self._snapshot()  # this revision now names another change: a lost tail
                continue
            if head.rev <= self.position:
                continue  # already delivered from the log
            if head.rev == self.position + 1:
                self._check_grant(frame)
                await self.send(event_frame(frame))
                self.services.metrics.events.inc()
                self.position, self.epoch, self.position_at = head.rev, head.epoch, head.at
            else:
                await self._catch_up()  # a revision went missing on the way: read the log

    async def _catch_up(self) -> None:
        wanted, self.wanted = self.wanted, None
        if wanted is not None:
            if wanted.since is None:
                await self._snapshot()  # sync without since: the client starts from state
                return
            since, known_epoch, known_at = wanted.since, wanted.epoch, wanted.at
        elif self.position is None:
            return  # the client has not synced yet: nothing to deliver
        else:
            since, known_epoch, known_at = self.position, None, self.position_at
        # From revision ``since`` itself when there is an ``at`` to check it against.
        first = since - 1 if known_at is not None and since > 0 else since
        history = await self.store.history(self.owner, first, self.services.settings.event_log_max)
        reaches = history.log_first is not None and history.log_first <= first + 1
        known = known_epoch if known_epoch is not None else self.epoch
        epoch_changed = known is not None and known != history.epoch
        heads = [(_event_head.decode(raw), raw) for raw in history.raw_events]
        if known_at is not None and 0 < since <= history.rev:
            at_since = (
                history.cart.updated_at
                if since == history.rev
                else next((h.at for h, _ in heads if h.rev == since), None)
            )
            diverged = at_since != known_at
        else:
            diverged = False
        if (
            epoch_changed
            or diverged
            or since > history.rev
            or (since < history.rev and not reaches)
        ):
            # The log no longer reaches back, Redis lost data, or a failover lost the change
            # at ``since`` and another took its revision: only a snapshot is right.
            await self._snapshot()
            return
        at = known_at
        for head, raw in heads:
            if head.rev > since:
                self._check_grant(raw)
                await self.send(event_frame(raw))
                self.services.metrics.events.inc()
                since, at = head.rev, head.at
        if since == history.rev:
            at = history.cart.updated_at
        self.position, self.epoch, self.position_at = since, history.epoch, at

    async def _snapshot(self) -> None:
        snap = await self.store.snapshot(self.owner, "state")
        frame = wire.SnapshotFrame(rev=snap.rev, cart=snap.cart, wishlists=snap.wishlists)
        await self.send(_encoder.encode(frame))
        self.services.metrics.snapshots.inc()
        self.position = snap.rev
        self.epoch = snap.epoch
        self.position_at = snap.cart.updated_at

    def _check_grant(self, raw_event: bytes) -> None:
        """A staff socket ends the moment the event that revokes its grant comes by."""
        if self.grant is not None and b"grant.revoked" in raw_event:
            event = _revocation.decode(raw_event)
            if event.type == "grant.revoked" and event.data.grant_id == self.grant.id:
                raise Close(GRANT_ENDED, "grant revoked")


async def _finish(tasks: list[asyncio.Task[None]], grace_s: float = 2.0) -> None:
    """Cancel ``tasks`` until they are done, for at most ``grace_s``.

    On Python 3.11 a cancel that lands as a Redis reply arrives is swallowed inside redis-py
    (``asyncio.wait_for`` returns the result), and the task runs on: so cancel again at its
    next await, rather than wait for a task that no longer knows it should stop.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
        if pending and loop.time() > deadline:
            names = ", ".join(task.get_name() for task in pending)
            log.error("live session tasks would not stop: %s", names)
            return
