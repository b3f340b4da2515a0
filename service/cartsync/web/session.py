"""One live socket of one owner: reading the client, and writing its owner's events in order.

A session delivers revisions strictly in order. Live events come from the hub, decoded once
per process; whenever a revision is skipped, the hub resubscribed, or the client asks with
``sync``, the session reads the owner's event log from the last revision it delivered, or
sends a snapshot when the log no longer reaches back that far.

What an idle socket holds is kept small, because a sale day means hundreds of thousands of
them: no task but the connection's own (it reads the client), no queue until an event waits,
and no timer of its own (the process's ``Wheel`` calls ``due`` for pings, silence and the end
of a token or grant). Writing happens in a short-lived task started when there is something to
send; it ends when the queue is empty. The common live event needs not even that: when the
socket has nothing else waiting and its connection offers ``write_frame``, the hub's reader
writes the event's frame, built once per process, straight to it. Ending is ``end``: it
records the first reason and interrupts the reading loop, so nothing waits behind a send to a
peer that stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections import deque
from typing import Final

import msgspec
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from cartsync import wire
from cartsync.domain.consent import Grant, utc_now
from cartsync.domain.model import Actor
from cartsync.domain.principal import Owner, Principal, Role
from cartsync.errors import (
    CartsyncError,
    Forbidden,
    InvalidInput,
    RevisionMismatch,
    StoreUnavailable,
)
from cartsync.storage.hub import Published
from cartsync.storage.presence import Device
from cartsync.storage.store import WriteContext
from cartsync.web import tracing
from cartsync.web.commands import BY_NAME, Pricer, fingerprint
from cartsync.web.errors import status_of
from cartsync.web.hypercorn_hooks import FRAMES, FrameWriter, text_frame
from cartsync.web.inputs import decode_body
from cartsync.web.live_protocol import (
    GOING_AWAY,
    GRANT_ENDED,
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    TOKEN_EXPIRED,
    TRY_AGAIN_LATER,
    Close,
    decode_frame,
)
from cartsync.web.logs import log_unexpected
from cartsync.web.services import Services

log = logging.getLogger("cartsync.live")

_encoder = msgspec.json.Encoder()
_PING: Final = '{"type":"ping"}'
_PONG: Final = '{"type":"pong"}'
_TOO_SLOW: Final = "too slow to keep up; reconnect with since"


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


def event_frame(raw_event: bytes) -> str:
    """The frame for one logged event; the event's own JSON is passed through untouched."""
    return '{"type":"event","event":' + raw_event.decode() + "}"


def frame_of(event: Published) -> str:
    """The event's frame, built once per process and shared by every local socket."""
    if event.frame is None:
        event.frame = event_frame(event.raw)
    return event.frame


def wire_of(event: Published) -> bytes:
    """The event's whole websocket frame (header and payload), built once per process."""
    if event.wire is None:
        event.wire = text_frame(frame_of(event).encode())
    return event.wire


class Session:
    """One authenticated socket of one owner."""

    __slots__ = (
        "_context",
        "_device",
        "_ended",
        "_frames",
        "_next_ping",
        "_ping_due",
        "_presence_due",
        "_presence_seen",
        "_queue",
        "_queued_bytes",
        "_reading",
        "_resync",
        "_sends",
        "_synced",
        "_writer",
        "device_id",
        "epoch",
        "grant",
        "last_heard",
        "owner",
        "position",
        "position_at",
        "principal",
        "services",
        "valid_until",
        "wanted",
        "ws",
    )

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        principal: Principal,
        owner: Owner,
        grant: Grant | None = None,
        valid_until: float | None = None,
    ) -> None:
        self.ws = websocket
        self.services = services
        self.principal = principal
        self.owner = owner
        self.grant = grant
        self.valid_until = valid_until
        """When the token the socket authenticated with stops being acceptable (Unix time)."""
        self.position: int | None = None
        """The last revision delivered; None until the client sent ``sync``."""
        self.wanted: wire.SyncFrame | None = None
        """A ``sync`` the client sent that is not answered yet."""
        self.epoch: str | None = None
        """The epoch ``position`` counts in."""
        self.position_at: str | None = None
        """When the change at ``position`` was made: tells it from another change that took
        its revision after a failover lost it."""
        self.last_heard = 0.0
        self._ended: Close | WebSocketDisconnect | None = None
        self._frames: FrameWriter | None = (websocket.scope.get("extensions") or {}).get(FRAMES)
        """Writes a frame built once for every socket straight to this one's connection
        (``hypercorn_hooks.FramingStream``); None where the server offers no such thing."""
        self._reading: asyncio.Timeout | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: deque[Published] | None = None
        self._queued_bytes = 0
        self._resync = False
        self._ping_due = False
        self._next_ping = 0.0
        self._context = contextvars.copy_context()
        self._sends = 0
        self._synced = False
        """A sync came: from then on events are queued (``position`` is None until the first
        catch-up has read the log, and an event published meanwhile must not be dropped)."""
        self.device_id = "d_" + secrets.token_hex(8)
        self._device = Device(
            label=None,
            kind="tablet" if principal.role is Role.STAFF else "other",
            role=principal.role.value,
            store=principal.store,
        )
        self._presence_due = False
        self._presence_seen: tuple[wire.PresentDevice, ...] | None = None
        """The last presence list sent; None until the client named its device (presence is
        opt-in, so a client that knows nothing of it never gets a frame it cannot read)."""
        """Sends under way; the first one's deadline is watched by the wheel."""

    async def run(self) -> None:
        """Serve the socket until it ends; raise the ``Close`` to send, if any."""
        loop = asyncio.get_running_loop()
        services = self.services
        self.last_heard = loop.time()
        self._next_ping = self.last_heard + services.settings.ws_ping_interval_s
        self._context = contextvars.copy_context()  # the request id, for the writer's logs
        await services.hub.add(self.owner.id, self)
        try:
            if not await services.hub.subscribed(self.owner.id, timeout_s=5.0):
                raise Close(TRY_AGAIN_LATER, "live updates are unavailable; retry")
            head = await services.store.history(self.owner, 0, 0)
            expires_at = None if self.valid_until is None else int(self.valid_until)
            hello = wire.Hello(
                rev=head.rev, owner=self.owner.id, epoch=head.epoch, expires_at=expires_at
            )
            await self.send(_encoder.encode(hello).decode())
            await services.presence.put(self.owner.id, self.device_id, self._device)
            services.wheel.schedule(self, self._next_deadline(loop.time()))
            if services.draining.is_set():
                self.drain()  # draining began while this socket was opening
            try:
                try:
                    async with asyncio.timeout(None) as self._reading:
                        await self._receive()
                finally:
                    self._reading = None
            except TimeoutError:
                pass  # ``end`` interrupted the reading loop; the reason is in ``_ended``
            except Exception as exc:
                self.end(_close_for(exc, "reading"))
            finally:
                services.wheel.forget(self)
                if self._writer is not None:
                    await _finish([self._writer])
        finally:
            await services.hub.remove(self.owner.id, self)
            with contextlib.suppress(CartsyncError, RedisError, OSError):
                await services.presence.remove(self.owner.id, self.device_id)
        raise self._ended or Close(INTERNAL_ERROR, "internal error; reconnect with since")

    def end(self, why: Close | WebSocketDisconnect) -> None:
        """End the session; the first reason given is the one the client gets."""
        if self._ended is None:
            self._ended = why
            if self._reading is not None:
                self._reading.reschedule(asyncio.get_running_loop().time())

    def drain(self) -> None:
        self.end(Close(GOING_AWAY, "server shutting down; reconnect"))

    # Deadlines (called by the process's wheel) ---------------------------------------------

    def due(self, now: float) -> float | None:
        """Ping, or end a silent client, an expired token or grant; the next deadline."""
        if self._ended is not None:
            return None
        interval = self.services.settings.ws_ping_interval_s
        if self.valid_until is not None and time.time() >= self.valid_until:
            self.end(Close(TOKEN_EXPIRED, "token expired; send a fresh auth before expires_at"))
            return None
        if self.grant is not None and self.grant.seconds_left(utc_now()) <= 0:
            self.end(Close(GRANT_ENDED, "grant expired"))
            return None
        if now - self.last_heard > 3 * interval:
            self.end(Close(GOING_AWAY, "no message or pong from the client; reconnect"))
            return None
        if now >= self._next_ping:
            self._next_ping = now + interval
            self._ping_due = True
            if self._presence_seen and any(not d.you for d in self._presence_seen):
                # Another device may have vanished with a crashed instance: look again.
                self._presence_due = True
            self._kick()
        return self._next_deadline(now)

    def _next_deadline(self, now: float) -> float:
        deadline = self._next_ping
        if self.valid_until is not None:
            deadline = min(deadline, now + max(0.0, self.valid_until - time.time()))
        if self.grant is not None:
            deadline = min(deadline, now + max(0.0, self.grant.seconds_left(utc_now())))
        return deadline

    # From the hub --------------------------------------------------------------------------

    def deliver(self, event: Published) -> None:
        if self._ended is not None:
            return
        if self.grant is not None:
            try:
                self._check_grant(event.raw)  # ends a staff socket synced or not
            except Close as close:
                self.end(close)
                return
        if not self._synced:
            return  # the client has not asked yet: its sync reads the log anyway
        position = self.position
        frames = self._frames
        if (
            frames is not None
            and position is not None
            and event.rev == position + 1
            and event.epoch == self.epoch
            and self.grant is None
            and (self._writer is None or self._writer.done())
            and not self._queue
            and frames.write_frame(wire_of(event))
        ):
            # The common case with no writer running (so nothing of ours is waiting to go
            # before it): the next revision, written here by the hub's reader, with no task.
            self.position, self.position_at = event.rev, event.at
            event.written += 1  # counted in the metrics once per event (Metrics.watch_hub)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        settings = self.services.settings
        size = len(event.raw)
        if len(queue) >= settings.ws_send_queue or (
            self._queued_bytes + size > settings.ws_send_queue_bytes
        ):
            self.services.metrics.overflows.inc()
            self.end(Close(TRY_AGAIN_LATER, _TOO_SLOW))
            return
        queue.append(event)
        self._queued_bytes += size
        self._kick()

    def resync(self) -> None:
        self._resync = True
        self._kick()

    def presence_changed(self) -> None:
        if self._presence_seen is not None:
            self._presence_due = True
            self._kick()

    def _kick(self) -> None:
        """Start the writer if it is not running; it stops again when nothing is left."""
        if self._ended is None and (self._writer is None or self._writer.done()):
            writer = asyncio.get_running_loop().create_task(
                self._write(), name="ws-write", context=self._context
            )
            writer.add_done_callback(self._writer_ended)
            self._writer = writer

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        if self._writer is task:
            self._writer = None  # a finished task is not kept on an idle socket
        if not task.cancelled() and task.exception() is not None:
            self.end(_close_for(task.exception(), "writing"))  # type: ignore[arg-type]

    # Client to server ----------------------------------------------------------------------

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        # ``_ended`` is checked after every await: on Python 3.11 a cancel that lands inside a
        # Redis call may be swallowed, and the loop must not read on as if nothing happened.
        while self._ended is None:
            frame = decode_frame(await self.ws.receive())
            self.last_heard = loop.time()
            if isinstance(frame, wire.SyncFrame):
                self.wanted = frame
                self._synced = True
                self._kick()
            elif isinstance(frame, wire.OpFrame):
                with tracing.op_span(frame.name):
                    await self._op(frame)
            elif isinstance(frame, wire.PingFrame):
                await self.send(_PONG)
            elif isinstance(frame, wire.AuthFrame):
                await self._reauthenticate(frame.token)
            elif isinstance(frame, wire.DeviceFrame):
                self._device = msgspec.structs.replace(
                    self._device, label=frame.label, kind=frame.kind
                )
                await self.services.presence.put(self.owner.id, self.device_id, self._device)
                if self._presence_seen is None:
                    self._presence_seen = ()  # from now on this socket follows presence
                    self._presence_due = True
                    self._kick()

    async def _reauthenticate(self, token: str) -> None:
        """A fresh token for the same caller extends the socket; anything else ends it."""
        try:
            principal, valid_until = await self.services.verifier.verify_until(token)
        except CartsyncError as exc:
            raise Close(POLICY_VIOLATION, exc.message) from exc
        if principal != self.principal:
            raise Close(POLICY_VIOLATION, "auth must be for the caller the socket opened as")
        self.valid_until = valid_until
        await self.send(_encoder.encode(wire.Authenticated(expires_at=int(valid_until))).decode())

    async def _op(self, frame: wire.OpFrame) -> None:
        command = BY_NAME.get(frame.name)
        store = self.services.store
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
            pricer = Pricer(
                self.principal.role,
                self.owner,
                self.services.pricing,
                store,
                self.services.settings.stores,
            )
            payload = await command.payload(body, params, pricer)
            result = await store.mutate(self.owner, command.op, payload, ctx)
        except CartsyncError as exc:
            detail = wire.ErrorDetail(code=exc.code, message=exc.message, field=exc.field)
            current = exc.current_rev if isinstance(exc, RevisionMismatch) else None
            nack = wire.Nack(id=frame.id, error=detail, rev=current)
            await self.send(_encoder.encode(nack).decode())
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
        await self.send(_encoder.encode(ack).decode())

    # Server to client ----------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Send one frame. A send still pending after ``CARTSYNC_WS_SEND_TIMEOUT_SECONDS`` ends
        the session (``overdue``): a peer that stopped reading holds nothing for longer.

        No lock: Hypercorn serialises writes per connection and wsproto builds each frame
        whole before the write, so frames from the reader and the writer never interleave.
        """
        wheel = self.services.wheel
        first = self._sends == 0
        if first:
            timeout = self.services.settings.ws_send_timeout_s
            wheel.watch(self, asyncio.get_running_loop().time() + timeout)
        self._sends += 1
        try:
            await self.ws.send({"type": "websocket.send", "text": text})
        finally:
            self._sends -= 1
            if self._sends == 0:
                wheel.unwatch(self)

    def overdue(self, now: float) -> None:
        self.services.metrics.overflows.inc()
        self.end(Close(TRY_AGAIN_LATER, _TOO_SLOW))

    async def _write(self) -> None:
        """Send what is due, in revision order, until nothing is left."""
        while self._ended is None:
            if self._ping_due:
                self._ping_due = False
                await self.send(_PING)
            elif self.wanted is not None or self._resync:
                self._resync = False
                await self._catch_up()
            elif self._presence_due:
                self._presence_due = False
                await self._send_presence()
            elif self._queue:
                event = self._queue.popleft()
                self._queued_bytes -= len(event.raw)
                position = self.position
                if (
                    position is not None
                    and event.rev == position + 1
                    and event.epoch == self.epoch
                    and self.grant is None
                ):
                    # The common case, one await shallower than ``_next``: the next revision.
                    self.position, self.position_at = event.rev, event.at
                    await self.send(frame_of(event))
                    self.services.metrics.events.inc()
                else:
                    await self._next(event)
            else:
                self._queue = None  # an idle socket keeps no queue
                return

    async def _next(self, event: Published) -> None:
        if self.position is None:
            return
        fresh = self.position == 0 and self.epoch is None  # no data yet: any epoch is new
        if event.epoch != self.epoch and not fresh:
            await self._snapshot()  # the owner's data restarted (erased, expired, lost)
        elif event.rev == self.position and event.at != self.position_at:
            await self._snapshot()  # this revision now names another change: a lost tail
        elif event.rev <= self.position:
            pass  # already delivered from the log
        elif event.rev == self.position + 1:
            self._check_grant(event.raw)
            await self.send(frame_of(event))
            self.services.metrics.events.inc()
            self.position, self.epoch, self.position_at = event.rev, event.epoch, event.at
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
            # The client has not synced yet: nothing to deliver. But a staff socket learns
            # that its grant was revoked only from the event, and pub/sub may have lost it
            # (this resync says messages may be missing): look at the grant itself.
            if self.grant is not None:
                await self._grant_still_valid()
            return
        else:
            since, known_epoch, known_at = self.position, None, self.position_at
        # From revision ``since`` itself when there is an ``at`` to check it against.
        first = since - 1 if known_at is not None and since > 0 else since
        settings = self.services.settings
        history = await self.services.store.history(self.owner, first, settings.event_log_max)
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

    async def _send_presence(self) -> None:
        """The owner's live devices, when they differ from what this socket last got."""
        found = await self.services.presence.devices(self.owner.id)
        devices = tuple(
            wire.PresentDevice(
                id=device_id,
                label=d.label,
                kind=d.kind,
                role=d.role,
                store=d.store,
                you=device_id == self.device_id,
            )
            for device_id, d in sorted(found.items())
        )
        if devices != self._presence_seen:
            self._presence_seen = devices
            await self.send(_encoder.encode(wire.PresenceFrame(devices=list(devices))).decode())

    async def _snapshot(self) -> None:
        snap = await self.services.store.snapshot(self.owner, "state")
        frame = wire.SnapshotFrame(rev=snap.rev, cart=snap.cart, wishlists=snap.wishlists)
        await self.send(_encoder.encode(frame).decode())
        self.services.metrics.snapshots.inc()
        self.position = snap.rev
        self.epoch = snap.epoch
        self.position_at = snap.cart.updated_at

    async def _grant_still_valid(self) -> None:
        """End an unsynced staff socket whose grant is gone; keep it if the store is down."""
        assert self.grant is not None
        with contextlib.suppress(StoreUnavailable):
            grant = await self.services.store.grant(self.grant.id)
            if grant is None or not grant.allows(self.principal, utc_now()):
                raise Close(GRANT_ENDED, "grant revoked")

    def _check_grant(self, raw_event: bytes) -> None:
        """A staff socket ends the moment the event that revokes its grant comes by."""
        if self.grant is not None and b"grant.revoked" in raw_event:
            event = _revocation.decode(raw_event)
            if event.type == "grant.revoked" and event.data.grant_id == self.grant.id:
                raise Close(GRANT_ENDED, "grant revoked")


def _close_for(failure: BaseException, where: str) -> Close | WebSocketDisconnect:
    """The close code for however reading or writing ended."""
    if isinstance(failure, Close | WebSocketDisconnect):
        return failure
    if isinstance(failure, StoreUnavailable):
        # Not 1008: the client did nothing wrong and should come back with since.
        return Close(TRY_AGAIN_LATER, "store unavailable; reconnect with since")
    if isinstance(failure, CartsyncError):
        return Close(POLICY_VIOLATION, failure.message)
    log_unexpected(log, f"live socket failed while {where}", failure)
    return Close(INTERNAL_ERROR, "internal error; reconnect with since")


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
