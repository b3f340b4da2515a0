"""Which of an owner's devices are live now, across every service instance.

Each live socket has an entry in its owner's presence hash (``OwnerKeys.presence``), naming
the instance that serves it. Joins, renames and leaves write the entry and publish a notice on
the owner's channel in one round trip, so every instance's sockets of that owner hear of it.
An instance that crashes leaves its entries behind; each instance therefore keeps a key of its
own alive (``instance_key``, a TTL of three heartbeats), and a read drops the entries of
instances whose key is gone. One write per instance per heartbeat, not one per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Final

import msgspec
import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.storage.keys import OwnerKeys, instance_key

log = logging.getLogger("cartsync.presence")

NOTICE: Final = b'{"presence":true}'
"""Published on the owner's channel when its devices changed (events always carry a rev)."""


class Device(msgspec.Struct, frozen=True):
    label: str | None
    kind: str
    role: str
    store: str | None
    instance: str = ""


_device = msgspec.json.Decoder(Device)
_encode = msgspec.json.Encoder().encode


class PresenceBoard:
    """This instance's view of, and entries in, every owner's presence."""

    def __init__(
        self, redis: Redis | RedisCluster, *, heartbeat_s: float, publish_command: str
    ) -> None:
        self._redis = redis
        self._heartbeat_s = heartbeat_s
        self._publish = publish_command
        self.instance = "i_" + secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name="presence-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(rexc.RedisError, OSError):
            await self._redis.delete(instance_key(self.instance))

    async def put(self, owner_id: str, device_id: str, device: Device) -> None:
        """Add or rename a device of the owner, and tell the owner's sockets everywhere."""
        entry = msgspec.structs.replace(device, instance=self.instance)
        await self._write(owner_id, "HSET", device_id, _encode(entry))

    async def remove(self, owner_id: str, device_id: str) -> None:
        await self._write(owner_id, "HDEL", device_id)

    async def devices(self, owner_id: str) -> dict[str, Device]:
        """The owner's live devices; entries of instances that stopped beating are dropped."""
        key = OwnerKeys(owner_id).presence
        raw = await self._redis.hgetall(key)
        found: dict[str, Device] = {}
        for field, value in raw.items():
            with contextlib.suppress(msgspec.DecodeError):
                name = field.decode() if isinstance(field, bytes) else field
                found[name] = _device.decode(value)
        instances = {d.instance for d in found.values()} - {self.instance}
        gone: set[str] = set()
        for instance in instances:  # a handful at most: the service's instances
            if not await self._redis.exists(instance_key(instance)):
                gone.add(instance)
        if gone:
            stale = [device_id for device_id, d in found.items() if d.instance in gone]
            with contextlib.suppress(rexc.RedisError, OSError):
                await self._redis.hdel(key, *stale)
            found = {k: d for k, d in found.items() if d.instance not in gone}
        return found

    def is_remote(self, device: Device) -> bool:
        return device.instance != self.instance

    async def _write(self, owner_id: str, command: str, *args: bytes | str) -> None:
        keys = OwnerKeys(owner_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.execute_command(command, keys.presence, *args)
            if command == "HSET":
                pipe.pexpire(keys.presence, int(self._heartbeat_s * 3000) + 86_400_000)
            pipe.execute_command(self._publish, keys.channel, NOTICE)
            await pipe.execute()

    async def _keep_alive(self) -> None:
        key = instance_key(self.instance)
        ttl_ms = int(self._heartbeat_s * 3000)
        while True:
            try:
                await self._redis.set(key, b"1", px=ttl_ms)
            except (rexc.RedisError, OSError) as exc:
                log.warning("presence heartbeat failed (%s)", type(exc).__name__)
            await asyncio.sleep(self._heartbeat_s)
