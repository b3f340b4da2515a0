"""Customer service's side of the store: the audit of support's reads, and what a restore is
planned from (the log with its state snapshots, read in one script)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import msgspec
import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.domain.principal import Owner
from cartsync.domain.restore import LogEntry, State
from cartsync.errors import StoreUnavailable
from cartsync.storage.keys import OwnerKeys

T = TypeVar("T")
AUDIT_MAX = 1000
"""Support reads kept per owner (newest first); they expire with the owner's data."""

_SCRIPT = (resources.files("cartsync.storage") / "lua" / "restore_read.lua").read_text()
_DOWN = (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError)
_obj = msgspec.json.Decoder(dict[str, Any])
_enc = msgspec.json.Encoder()


class SupportRead(msgspec.Struct):
    """One read by support: who looked, when, why, and at what (method and path)."""

    at: str
    agent: str
    reason: str
    what: str


_read_dec = msgspec.json.Decoder(SupportRead)


@dataclass(frozen=True)
class RestoreBasis:
    """An owner's revision, epoch and state now, and the log (oldest first) to replay from."""

    rev: int
    epoch: str
    now: State
    log_first: int | None
    entries: list[LogEntry]


class SupportLog:
    """Support's records of one Redis: audited reads and restore planning."""

    def __init__(self, redis: Redis | RedisCluster, owner_ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = owner_ttl_s
        self._read = redis.register_script(_SCRIPT)

    async def record_read(self, owner: Owner, read: SupportRead) -> None:
        """Appends one read, keeping the newest AUDIT_MAX, for as long as the owner's data."""
        key = OwnerKeys(owner.id).support_reads

        async def run() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.lpush(key, _enc.encode(read))
                pipe.ltrim(key, 0, AUDIT_MAX - 1)
                pipe.expire(key, self._ttl_s)
                await pipe.execute()

        await _guarded(run)

    async def reads(self, owner: Owner) -> list[SupportRead]:
        key = OwnerKeys(owner.id).support_reads
        raw = await _guarded(lambda: self._redis.lrange(key, 0, AUDIT_MAX - 1))
        return [_read_dec.decode(r) for r in raw]

    async def forget(self, owner: Owner) -> None:
        """Erasure takes the record of support's reads with the data they were about."""
        await _guarded(lambda: self._redis.delete(OwnerKeys(owner.id).support_reads))

    async def basis(self, owner: Owner) -> RestoreBasis:
        keys = OwnerKeys(owner.id)
        read_keys = [keys.meta, keys.lines, keys.wishlists, keys.wish_items, keys.log]
        reply = await _guarded(lambda: self._read(keys=read_keys, args=[]))
        rev, epoch, note, lines, wishlists, flat_items, raw_entries = reply
        items = [
            (bytes(flat_items[i]).decode(), _obj.decode(flat_items[i + 1]))
            for i in range(0, len(flat_items), 2)
        ]
        now = State.stored(
            bytes(note).decode(),
            [_obj.decode(raw) for raw in lines],
            [_obj.decode(raw) for raw in wishlists],
            items,
        )
        entries = [
            LogEntry(
                int(bytes(entry_id).split(b"-")[0]),
                _obj.decode(event),
                _obj.decode(snapshot) if snapshot else None,
            )
            for entry_id, event, snapshot in raw_entries
        ]
        return RestoreBasis(
            int(rev), bytes(epoch).decode(), now, entries[0].rev if entries else None, entries
        )


async def _guarded(run: Callable[[], Awaitable[T]]) -> T:
    try:
        return await run()
    except _DOWN as exc:
        raise StoreUnavailable("the cart store (Redis) is unreachable; retry shortly") from exc
