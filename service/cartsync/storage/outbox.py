"""The back-office outbox in Redis: what the worker polls, leases, acknowledges and gives up.

Mutations write events into their owner's partition (``events.lua`` + ``outbox.lua``, joined in
front of the mutation script in ``storage/lua/mutate/``). Everything here runs on the delivery
side, one partition per script call, so every script's keys share the partition's tag (one
Cluster slot).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.storage.keys import (
    ENDPOINTS_GONE_KEY,
    FEED_KEY,
    OUTBOX_HINTS_KEY,
    SLOTS,
    OwnerKeys,
    PartitionKeys,
    dead_letters_key,
    partition_of,
)

AnyRedis = Redis | RedisCluster
log = logging.getLogger("cartsync.outbox")

FEED_ENDPOINT = "_feed"
"""The built-in endpoint whose 'delivery' appends to the feed ``GET /v1/events`` reads."""


@dataclass(frozen=True)
class OutboxConfig:
    """What a mutation needs to know to write back-office events and deadlines."""

    enabled: bool = False
    partitions: int = 16
    guests: bool = False
    abandoned_after_s: int = 3600
    expiry_notice_s: int = 3 * 86400

    def argument(self, guest: bool) -> str:
        """The script's ARGV entry: '' when this owner produces no back-office events."""
        if not self.enabled or (guest and not self.guests):
            return ""
        return self._encoded

    @cached_property
    def _encoded(self) -> str:  # once, not per mutation
        return json.dumps(
            {"abandon_ms": self.abandoned_after_s * 1000, "notice_ms": self.expiry_notice_s * 1000}
        )


@dataclass(frozen=True)
class Lease:
    """An owner's first queued event for one endpoint, held by this worker until ``ack``."""

    partition: int
    endpoint: str
    owner: str
    outbox_id: str
    event: bytes
    """Empty if the outbox entry is gone (a Redis that lost data): given up at once."""
    attempts: int
    first_attempt_ms: int | None


@dataclass(frozen=True)
class DueDeadline:
    partition: int
    member: str
    lease: str

    @property
    def owner(self) -> str:
        return self.member[2:]


@dataclass
class PollResult:
    fanned_out: int = 0
    leases: list[Lease] = field(default_factory=list)
    deadlines: list[DueDeadline] = field(default_factory=list)
    next_due_ms: dict[int, int] = field(default_factory=dict)
    """Partition -> its earliest deadline still to come (partitions with none are absent)."""


@dataclass(frozen=True)
class Subscription:
    """An endpoint as the poll script sees it: its event types (None: all) and free slots."""

    name: str
    types: frozenset[str] | None
    take: int
    gone: bool = False


def _source(*names: str) -> str:
    folder = resources.files("cartsync.storage") / "lua"
    return "\n".join((folder / f"{n}.lua").read_text() for n in names)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Outbox:
    """The delivery side of the outbox, for one Redis (standalone, Sentinel or Cluster)."""

    def __init__(self, redis: AnyRedis, partitions: int) -> None:
        self.redis = redis
        self._r: Any = redis  # redis-py's stubs disagree with its stream and script replies
        self.partitions = SLOTS if isinstance(redis, RedisCluster) else partitions
        self._sources = {
            "poll": _source("outbox_poll"),
            "ack": _source("outbox_ack"),
            "deadline": _source("events", "deadline"),
        }
        self._shas: dict[str, str] = {}

    async def _load(self) -> None:
        for name, source in self._sources.items():
            self._shas[name] = str(await self._r.script_load(source))

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if name not in self._shas:
            await self._load()
        try:
            return await self._r.evalsha(self._shas[name], len(keys), *keys, *args)
        except rexc.NoScriptError:  # Redis restarted or flushed its script cache
            await self._load()
            return await self._r.evalsha(self._shas[name], len(keys), *keys, *args)

    async def poll(
        self,
        partitions: Sequence[int],
        subscriptions: Sequence[Subscription],
        *,
        consumer: str,
        now_ms: int,
        lease_ms: int,
        batch: int = 200,
        deadlines: int = 50,
    ) -> PollResult:
        """Fan out, lease due owners and due deadlines in each partition, one pipeline."""
        if not self._shas:
            await self._load()
        entries: list[dict[str, Any]] = []
        for s in subscriptions:
            entry: dict[str, Any] = {"off": s.gone, "take": s.take}
            if s.types is not None:  # absent, not null: cjson's null is not Lua's nil
                entry["types"] = dict.fromkeys(sorted(s.types), True)
            entries.append(entry)
        spec = json.dumps(entries)
        result = PollResult()
        replies = await self._pipeline(
            "poll",
            [
                (
                    self._poll_keys(PartitionKeys(p), subscriptions),
                    [consumer, now_ms, lease_ms, batch, spec, deadlines],
                )
                for p in partitions
            ],
        )
        for p, reply in zip(partitions, replies, strict=True):
            fanned, leased, due, next_due = reply
            if int(next_due) >= 0:
                result.next_due_ms[p] = int(next_due)
            result.fanned_out += int(fanned)
            for sub, rows in zip(subscriptions, leased, strict=True):
                for owner, outbox_id, event, record in rows:
                    attempts, first = 0, None
                    if record:
                        n, _, t = _text(record).partition("|")
                        attempts, first = int(n), int(t)
                    result.leases.append(
                        Lease(
                            p,
                            sub.name,
                            _text(owner),
                            _text(outbox_id),
                            bytes(event),
                            attempts,
                            first,
                        )
                    )
            result.deadlines.extend(DueDeadline(p, _text(m), _text(s)) for m, s in due)
        return result

    async def _pipeline(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        for attempt in range(2):
            pipe = self._r.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._shas[name], len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except rexc.NoScriptError:
                if attempt:
                    raise
                await self._load()
        raise AssertionError("unreachable")

    @staticmethod
    def _poll_keys(pk: PartitionKeys, subscriptions: Sequence[Subscription]) -> list[str]:
        keys = [pk.outbox, pk.remaining, pk.deadlines]
        for s in subscriptions:
            keys += [pk.queue(s.name), pk.ready(s.name), pk.attempts(s.name)]
        return keys

    async def ack(
        self,
        lease: Lease,
        *,
        now_ms: int,
        retry_at_ms: int | None = None,
        take_next_ms: int = 0,
    ) -> int | Lease:
        """Record a delivery (or a give-up) with ``retry_at_ms=None``, else a retry then.

        0: the lease had moved on; 1: recorded; 2: recorded, and the owner has more queued
        (due now). With ``take_next_ms``, that next event comes back instead, leased to the
        caller until then."""
        pk = PartitionKeys(lease.partition)
        keys = [
            pk.outbox,
            pk.remaining,
            pk.queue(lease.endpoint),
            pk.ready(lease.endpoint),
            pk.attempts(lease.endpoint),
        ]
        outcome = "done" if retry_at_ms is None else "retry"
        args = [lease.owner, lease.outbox_id, outcome, now_ms, retry_at_ms or 0, take_next_ms]
        reply = await self._eval("ack", keys, args)
        if not isinstance(reply, list):
            return int(reply)
        _, next_id, event = reply
        if not next_id:
            return 2
        return Lease(
            lease.partition, lease.endpoint, lease.owner, _text(next_id), bytes(event), 0, None
        )

    async def release(self, lease: Lease, *, now_ms: int) -> None:
        """Hand a leased, unattempted event back: due now, for any worker."""
        pk = PartitionKeys(lease.partition)
        keys = [
            pk.outbox,
            pk.remaining,
            pk.queue(lease.endpoint),
            pk.ready(lease.endpoint),
            pk.attempts(lease.endpoint),
        ]
        await self._eval("ack", keys, [lease.owner, lease.outbox_id, "release", now_ms, 0, 0])

    async def fire_deadline(self, due: DueDeadline, *, now_iso: str, now_ms: int) -> bool:
        """Write the deadline's event if it still stands; True if one was written."""
        pk = PartitionKeys(due.partition)
        ok = OwnerKeys(due.owner)
        keys = [ok.meta, ok.lines, pk.outbox, pk.deadlines, pk.carts]
        args = [due.member, due.lease, due.owner, now_iso, now_ms]
        return bool(await self._eval("deadline", keys, args))

    # Dead letters, endpoints that said 410, the pull feed -----------------------------------

    async def dead_letter(self, lease: Lease, reason: str, last_status: str) -> None:
        fields: dict[str | bytes, str | bytes] = {
            "owner": lease.owner,
            "reason": reason,
            "attempts": str(lease.attempts + 1),
            "last_status": last_status,
            "event": lease.event,
        }
        await self._r.xadd(dead_letters_key(lease.endpoint), fields)

    async def dead_letters(self, endpoint: str, count: int) -> list[tuple[str, dict[str, str]]]:
        rows = await self._r.xrange(dead_letters_key(endpoint), count=count)
        return [(_text(i), {_text(k): _text(v) for k, v in f.items()}) for i, f in rows]

    async def mark_gone(self, endpoint: str, at: str) -> None:
        await self._r.hset(ENDPOINTS_GONE_KEY, endpoint, at)

    async def gone(self) -> set[str]:
        return {_text(k) for k in await self._r.hkeys(ENDPOINTS_GONE_KEY)}

    async def append_feed(self, event: bytes, max_len: int) -> None:
        await self._r.xadd(FEED_KEY, {"e": event}, maxlen=max_len, approximate=True)

    async def read_feed(
        self, after: str, count: int, block_ms: int | None
    ) -> list[tuple[str, bytes]]:
        """Feed entries after the cursor ``after`` (a feed entry id, '0' for the start)."""
        if block_ms:
            got = await self._r.xread({FEED_KEY: after}, count=count, block=block_ms)
            rows = got[0][1] if got else []
        else:
            rows = await self._r.xrange(FEED_KEY, min=f"({after}", count=count)
        return [(_text(i), bytes(f[b"e"])) for i, f in rows]

    async def requeue(self, endpoint: str, events: Sequence[tuple[str, bytes]]) -> int:
        """Queue already delivered events again for one endpoint (``cartsync events replay``)."""
        count = 0
        for owner, event in events:
            pk = partition_of(owner, self.partitions)
            entry = await self._r.xadd(pk.outbox, {"o": owner, "r": endpoint, "e": event})
            keys = [pk.queue(endpoint), pk.ready(endpoint), pk.remaining]
            await self._eval_text(_REQUEUE, keys, [owner, _text(entry)])
            count += 1
        return count

    async def _eval_text(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self._r.eval(source, len(keys), *keys, *args)

    async def take_hints(self, count: int) -> list[int]:
        """Partitions a service just wrote events to (each hint goes to one worker)."""
        raw = await self._r.spop(OUTBOX_HINTS_KEY, count)
        return [int(p) for p in raw or () if int(p) < self.partitions]

    async def outbox_length(self) -> int:
        """Entries not yet delivered everywhere, over every partition (for the metrics)."""
        pipe = self._r.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.xlen(PartitionKeys(p).outbox)
        return sum(int(n) for n in await pipe.execute())


class OutboxHints:
    """Partitions that just got events, told to the workers in batches (``OUTBOX_HINTS_KEY``).

    Only a wake-up, so a Cluster's 16,384 partitions need not all be polled for an event to
    leave at once; a lost batch (a crash, Redis away) is found by the workers' sweep. One
    SADD per batch, never per mutation, and never on a request's path.
    """

    def __init__(self, redis: AnyRedis, interval_s: float = 0.02) -> None:
        self._r: Any = redis
        self._interval_s = interval_s
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()

    def note(self, partition: int) -> None:
        self._dirty.add(partition)
        self._wake.set()

    async def run(self) -> None:
        """Flush batches until cancelled (the app's lifespan owns this task)."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)
            self._wake.clear()
            batch, self._dirty = self._dirty, set()
            try:
                await self._r.sadd(OUTBOX_HINTS_KEY, *batch)
            except (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError) as exc:
                log.info("outbox hints not sent (%s); the workers' sweep finds them", exc)


# Replayed events were read back from the feed and are written to the owner's partition again,
# then queued behind whatever that owner still has queued for the endpoint.
_REQUEUE = """
local queued = redis.call('HGET', KEYS[1], ARGV[1])
if queued then
  redis.call('HSET', KEYS[1], ARGV[1], queued .. ' ' .. ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[1])
end
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
return 1
"""
