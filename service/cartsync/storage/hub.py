"""One Redis pub/sub connection per process, fanned out to the local consumers of each owner.

Each published event is decoded once per process (``Published``) and handed to every local
consumer of its owner by a plain call from the reader: no queue or task per consumer here.
Pub/sub is only a wake-up signal (it is at-most-once, and redis-py may drop and re-subscribe a
connection without telling anyone). The owner's event log is the record: whenever a channel is
(re)subscribed or the connection is replaced, every consumer of it is told to ``resync`` and
reads the log from the last revision it delivered. A heartbeat through Redis finds a silent
connection in seconds rather than after TCP keepalive's minute.

On a Redis Cluster the hub uses sharded pub/sub (SSUBSCRIBE): each owner's channel lives on
the shard that holds the owner's keys. When a slot moves, the old node ends the subscription
itself (an SUNSUBSCRIBE nobody asked for), and redis-py only re-homes subscriptions once a
keyed command has met a MOVED reply, which a process that only reads may never send. So any
unsubscribe arriving while a channel still has consumers is answered with a keyed probe (which
refreshes the slot map) and a fresh subscribe; its confirmation makes the consumers catch up
from the log like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from cartsync.storage.keys import OwnerKeys
from cartsync.storage.presence import NOTICE

log = logging.getLogger("cartsync.hub")


class _Head(msgspec.Struct):
    rev: int
    epoch: str | None = None
    at: str | None = None


_head = msgspec.json.Decoder(_Head)


class Published:
    """One event as the script published it, decoded once for every local consumer.

    ``frame`` and ``wire`` are slots for what the transport makes of it (the websocket
    message's text, the whole frame's bytes), so that they too are built once per process
    rather than once per socket; ``written`` counts the consumers that wrote it out at once,
    tallied by the hub's ``on_fanned_out`` once per event rather than once per socket.
    """

    __slots__ = ("at", "epoch", "frame", "raw", "rev", "wire", "written")

    def __init__(self, raw: bytes) -> None:
        head = _head.decode(raw)
        self.raw = raw
        self.rev = head.rev
        self.epoch = head.epoch
        self.at = head.at
        self.frame: str | None = None
        self.wire: bytes | None = None
        self.written = 0


class Consumer(Protocol):
    """What a local consumer of one owner's events offers the hub (a live socket, a test)."""

    def deliver(self, event: Published) -> None:
        """The next published event; called from the hub's reader, so it must not block."""

    def resync(self) -> None:
        """Messages may have been missed: read the log from the last revision delivered."""

    def presence_changed(self) -> None:
        """One of the owner's devices joined, left or renamed itself (``presence.NOTICE``)."""


class _Plain:
    """Classic pub/sub: one connection, messages from every node (standalone, Sentinel)."""

    subscribe, unsubscribe, publish = "subscribe", "unsubscribe", "publish"
    subscribed, unsubscribed, message = "subscribe", "unsubscribe", "message"

    @staticmethod
    async def get(pubsub: PubSub, wait_s: float) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await pubsub.get_message(timeout=wait_s)
        return message

    @staticmethod
    async def find_home(redis: Redis | RedisCluster, channel: str | None) -> None:
        """Nothing to find: one server has every channel."""


class _Sharded:
    """Sharded pub/sub on a Cluster: one connection per shard, polled in turn by redis-py."""

    subscribe, unsubscribe, publish = "ssubscribe", "sunsubscribe", "spublish"
    subscribed, unsubscribed, message = "ssubscribe", "sunsubscribe", "smessage"
    POLL_S = 0.005
    """redis-py waits out the timeout on each shard in turn; keep it short."""

    @staticmethod
    async def get(pubsub: PubSub, wait_s: float) -> dict[str, Any] | None:
        assert isinstance(pubsub, ClusterPubSub)
        message: dict[str, Any] | None = await pubsub.get_sharded_message(timeout=_Sharded.POLL_S)
        if message is None:
            await asyncio.sleep(_Sharded.POLL_S)
        return message

    @staticmethod
    async def find_home(redis: Redis | RedisCluster, channel: str | None) -> None:
        """Bring the slot map up to date: for ``channel``'s slot with a keyed probe (the channel
        carries the owner's hash tag, so it meets MOVED if the slot moved), or all of it."""
        assert isinstance(redis, RedisCluster)
        with contextlib.suppress(rexc.RedisError, OSError):
            if channel is None:
                await redis.nodes_manager.initialize()
            else:
                await redis.exists(channel)


class Hub:
    """Owns the pub/sub connection and its reader and heartbeat tasks."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        heartbeat_s: float = 2.0,
    ) -> None:
        self._redis = redis
        self._kind: type[_Plain] | type[_Sharded] = (
            _Sharded if isinstance(redis, RedisCluster) else _Plain
        )
        self._heartbeat_s = heartbeat_s
        self._heartbeat_channel = f"cs:hb:{uuid.uuid4().hex}"
        self._consumers: dict[str, set[Consumer]] = {}
        self._active: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        """Per channel awaiting its subscription's confirmation: one future, however many
        consumers wait for it."""
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._rehoming: dict[str, asyncio.Task[None]] = {}
        self.reconnects = 0
        self.rehomed = 0
        self.on_fanned_out: Callable[[Published], None] | None = None
        """Called with each event once every local consumer had it (metrics)."""
        """Subscriptions the server ended while they had consumers (Cluster slot moves)."""
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="hub-reader"),
            asyncio.create_task(self._beat_forever(), name="hub-heartbeat"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._rehoming.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def channels(self) -> int:
        return len(self._consumers)

    def consumer_count(self, owner_id: str) -> int:
        return len(self._consumers.get(OwnerKeys(owner_id).channel, ()))

    async def add(self, owner_id: str, consumer: Consumer) -> None:
        """Deliver an owner's events to ``consumer`` until ``remove``."""
        channel = OwnerKeys(owner_id).channel
        group = self._consumers.setdefault(channel, set())
        group.add(consumer)
        if channel not in self._active and len(group) == 1:
            await self._command("subscribe", channel)

    async def remove(self, owner_id: str, consumer: Consumer) -> None:
        """Stop delivering to ``consumer``; the owner's last consumer out unsubscribes."""
        channel = OwnerKeys(owner_id).channel
        group = self._consumers.get(channel)
        if group is None:
            return
        group.discard(consumer)
        if not group:
            del self._consumers[channel]
            # Inactive from now on: a consumer arriving before the confirmation must
            # subscribe again rather than trust a subscription that is going away.
            self._active.discard(channel)
            waiting = self._confirmed.pop(channel, None)
            if waiting is not None:
                waiting.cancel()
            await self._command("unsubscribe", channel)

    async def subscribed(self, owner_id: str, timeout_s: float) -> bool:
        """Whether the owner's channel is (or within ``timeout_s`` becomes) subscribed."""
        channel = OwnerKeys(owner_id).channel
        if channel in self._active:
            return True
        waiting = self._confirmed.get(channel)
        if waiting is None:
            waiting = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if waiting.cancelled():
                return False  # its last consumer left meanwhile
            raise
        return True

    async def _command(self, verb: str, channel: str) -> None:
        # Sent on the reader's connection; confirmations come back through the reader. If the
        # connection is down, the reader subscribes every wanted channel when it reconnects.
        async with self._lock:
            if self._pubsub is None:
                return
            try:
                await getattr(self._pubsub, getattr(self._kind, verb))(channel)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError):
                log.warning("pub/sub %s failed; the reader will reconnect", verb)

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._redis.pubsub()
            try:
                async with self._lock:
                    subscribe = getattr(pubsub, self._kind.subscribe)
                    await subscribe(self._heartbeat_channel, *self._consumers)
                    self._pubsub = pubsub
                await self._read(pubsub)
            except (
                rexc.ConnectionError,
                rexc.TimeoutError,
                rexc.RedisClusterException,
                rexc.ClusterError,
                OSError,
                _Silent,
            ) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting", type(exc).__name__)
                # On a Cluster the node may be gone for good (a failover), and reconnecting by
                # the same slot map would find it again: nothing else refreshes the map in a
                # process that only serves sockets.
                await self._kind.find_home(self._redis, None)
            except rexc.ResponseError as exc:
                # E.g. MOVED for a subscription sent on a stale slot map: start over from a
                # fresh map rather than let the reader die and every socket go quiet.
                log.warning("pub/sub refused a command (%s); reconnecting", exc)
                await self._kind.find_home(self._redis, None)
            finally:
                async with self._lock:
                    self._pubsub = None
                self.connected.clear()
                self._active.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            self.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
            backoff = min(backoff * 2, 2.0)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            message = await self._kind.get(pubsub, self._heartbeat_s)
            now = loop.time()
            if message is not None:
                kind = _text(message["type"])
                channel = _text(message["channel"])
                if channel == self._heartbeat_channel:
                    last_beat = now
                    if kind == self._kind.subscribed:
                        self.connected.set()
                elif kind == self._kind.message:
                    self._fan_out(channel, bytes(message["data"]))
                elif kind == self._kind.subscribed:
                    self._active.add(channel)
                    waiting = self._confirmed.pop(channel, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)
                    for consumer in tuple(self._consumers.get(channel, ())):
                        consumer.resync()
                elif kind == self._kind.unsubscribed:
                    self._active.discard(channel)
                    if self._consumers.get(channel):
                        self._rehome(channel)
            if now - last_beat > 3 * self._heartbeat_s:
                raise _Silent

    def _fan_out(self, channel: str, raw: bytes) -> None:
        consumers = self._consumers.get(channel)
        if not consumers:
            return
        if raw == NOTICE:
            for consumer in tuple(consumers):
                consumer.presence_changed()
            return
        try:
            event = Published(raw)
        except msgspec.DecodeError:
            log.warning("an event on %s could not be read; its consumers read the log", channel)
            for consumer in tuple(consumers):
                consumer.resync()
            return
        for consumer in tuple(consumers):
            consumer.deliver(event)
        if self.on_fanned_out is not None:
            self.on_fanned_out(event)

    def _rehome(self, channel: str) -> None:
        """Subscribe again to a channel that still has consumers (see the module docstring)."""
        if channel not in self._rehoming:
            task = asyncio.create_task(self._resubscribe(channel), name="hub-rehome")
            self._rehoming[channel] = task
            task.add_done_callback(lambda _: self._rehoming.pop(channel, None))

    async def _resubscribe(self, channel: str) -> None:
        self.rehomed += 1
        log.info("pub/sub subscription ended by the server; subscribing again")
        await self._kind.find_home(self._redis, channel)
        if self._consumers.get(channel):
            await self._command("subscribe", channel)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(rexc.ConnectionError, rexc.TimeoutError, OSError):
                await getattr(self._redis, self._kind.publish)(self._heartbeat_channel, b"")
            # On a Cluster the heartbeat crosses one shard only: a master that hangs (its
            # connections open, silent) and is replaced by its replica goes unnoticed by a
            # process that only reads. A fresh slot map makes redis-py move the subscriptions
            # to the new master; the confirmations make the consumers catch up.
            await self._kind.find_home(self._redis, None)


class _Silent(Exception):
    """No heartbeat came back: the connection is half-open or the subscription is gone."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
