"""The delivery worker: polls every outbox partition, signs and sends, retries, gives up.

Any number of workers may run against one Redis: the poll script hands each due owner (per
endpoint) to one worker at a time for ``visibility_s``, so a customer's events reach an
endpoint in order (n+1 is leased only after n was delivered or given up), and a killed
worker's leases pass to another once they run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import msgspec
import redis.exceptions as rexc

from cartsync.events import signing
from cartsync.events.endpoints import WebhookEndpoint
from cartsync.storage.outbox import (
    FEED_ENDPOINT,
    DueDeadline,
    Lease,
    Outbox,
    Subscription,
)

log = logging.getLogger("cartsync.worker")

_REDIS_DOWN = (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError, rexc.ReadOnlyError)
CHUNK = 256
"""Partitions per poll pipeline (a Cluster has 16,384)."""
RUN = 50
"""Events of one customer a delivery task sends in a row before it lets the poll decide."""


class _Envelope(msgspec.Struct):
    id: str
    occurred_at: str


_envelope = msgspec.json.Decoder(_Envelope)


@dataclass(frozen=True)
class WorkerConfig:
    poll_s: float = 0.5
    visibility_s: float = 30.0
    retry_hours: float = 24.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 3600.0
    feed_max: int = 100_000
    connect_timeout_s: float = 2.0
    total_timeout_s: float = 10.0


class DeliveryObserver(Protocol):
    """What the worker reports; web/metrics.py's WorkerMetrics implements it for Prometheus."""

    def attempt(self, endpoint: str, outcome: str) -> None: ...
    def delivered(self, endpoint: str, lag_s: float) -> None: ...
    def dead_letter(self, endpoint: str, reason: str) -> None: ...
    def outbox_length(self, length: int) -> None: ...


class _Unobserved:
    def attempt(self, endpoint: str, outcome: str) -> None:
        pass

    def delivered(self, endpoint: str, lag_s: float) -> None:
        pass

    def dead_letter(self, endpoint: str, reason: str) -> None:
        pass

    def outbox_length(self, length: int) -> None:
        pass


class Worker:
    def __init__(
        self,
        outbox: Outbox,
        endpoints: Sequence[WebhookEndpoint],
        config: WorkerConfig,
        *,
        observer: DeliveryObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.endpoints = {e.name: e for e in endpoints}
        self.config = config
        self.observer: DeliveryObserver = observer or _Unobserved()
        self.clock = clock
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(24):06x}"
        self._limits = {e.name: e.max_concurrency for e in endpoints}
        self._limits[FEED_ENDPOINT] = 32
        self._slots = {name: asyncio.Semaphore(n) for name, n in self._limits.items()}
        self._inflight = dict.fromkeys(self._limits, 0)
        self._deadlines_inflight = 0
        self._gone: set[str] = set()
        self._next_due: dict[int, int] = {}
        """Partition -> its earliest deadline (ms), as its last poll saw it."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and deliver until ``stop`` is set; then give deliveries under way a moment.

        A delivery cut short is not lost: its lease runs out and it is sent again.
        """
        timeout = httpx.Timeout(self.config.total_timeout_s, connect=self.config.connect_timeout_s)
        limits = httpx.Limits(max_connections=sum(self._limits.values()) + 8)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, limits=limits
        ) as self._http:
            reporter = self._spawn(self._report_length(stop))
            try:
                await self._loop(stop)
            finally:
                reporter.cancel()
                pending = set(self._tasks)
                if pending:
                    _, late = await asyncio.wait(pending, timeout=self.config.total_timeout_s)
                    for task in late:
                        task.cancel()
                    if late:  # a cancel landing inside a Redis call can be swallowed: wait a moment
                        await asyncio.wait(late, timeout=2)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _loop(self, stop: asyncio.Event) -> None:
        """Each round polls the partitions hinted by services, those with a deadline due, and
        the next slice of a sweep over all of them (every one, on a single Redis), which
        finds whatever a lost hint or a killed worker left behind."""
        next_gone = 0.0
        sweep = 0
        total = self.outbox.partitions
        while not stop.is_set():
            busy = False
            try:
                if self.clock() >= next_gone:
                    self._gone = await self.outbox.gone()
                    next_gone = self.clock() + 5
                now_ms = int(self.clock() * 1000)
                wanted = set(await self.outbox.take_hints(CHUNK))
                wanted.update(p for p, due in self._next_due.items() if due <= now_ms)
                wanted.update(range(sweep, min(sweep + CHUNK, total)))
                sweep = sweep + CHUNK if sweep + CHUNK < total else 0
                ordered = sorted(wanted)
                for start in range(0, len(ordered), CHUNK):
                    busy |= await self._poll(ordered[start : start + CHUNK])
            except _REDIS_DOWN as exc:
                log.warning("outbox poll failed (%s); retrying", exc)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_s)

    async def _poll(self, partitions: list[int]) -> bool:
        subs = []
        for name, limit in self._limits.items():
            free = max(0, 2 * limit - self._inflight[name])
            take = -(-free // len(partitions)) if free else 0
            endpoint = self.endpoints.get(name)
            subs.append(
                Subscription(
                    name,
                    endpoint.types if endpoint else None,
                    take,
                    gone=name in self._gone,
                )
            )
        now_ms = int(self.clock() * 1000)
        deadline_budget = 1 if self._deadlines_inflight < 256 else 0
        before = {p: self._next_due[p] for p in partitions if p in self._next_due}
        result = await self.outbox.poll(
            partitions,
            subs,
            consumer=self.consumer,
            now_ms=now_ms,
            lease_ms=int(self.config.visibility_s * 1000),
            deadlines=20 * deadline_budget,
        )
        for p in partitions:
            reported = result.next_due_ms.get(p)
            if self._next_due.get(p) != before.get(p):  # a delivery ended meanwhile: keep both
                self._due_at(p, self._next_due[p] if reported is None else reported)
            elif reported is None:
                self._next_due.pop(p, None)
            else:
                self._next_due[p] = reported
        for lease in result.leases:
            self._inflight[lease.endpoint] += 1
            self._spawn(self._deliver(lease))
        for due in result.deadlines:
            self._deadlines_inflight += 1
            self._spawn(self._deadline(due))
        return bool(result.fanned_out or result.leases or result.deadlines)

    async def _deadline(self, due: DueDeadline) -> None:
        try:
            now = self.clock()
            if await self.outbox.fire_deadline(due, now_iso=_iso(now), now_ms=int(now * 1000)):
                self._due_now(due.partition)  # its event waits in the outbox
        except _REDIS_DOWN as exc:
            log.warning(
                "deadline %s failed (%s); its lease runs out and it is tried again", due.member, exc
            )
        finally:
            self._deadlines_inflight -= 1

    async def _deliver(self, lease: Lease) -> None:
        try:
            async with self._slots[lease.endpoint]:
                # A customer's backlog goes out in one run (the ack leases the next event),
                # up to a bound, so one busy customer cannot hold a slot for ever.
                current: Lease | None = lease
                for _ in range(RUN):
                    if current is None:
                        break
                    current = await self._attempt(current)
                if current is not None:
                    await self.outbox.release(current, now_ms=int(self.clock() * 1000))
                    self._due_now(current.partition)
        except _REDIS_DOWN as exc:
            log.warning(
                "delivery bookkeeping failed (%s); the lease runs out and it is retried", exc
            )
        finally:
            self._inflight[lease.endpoint] -= 1

    async def _attempt(self, lease: Lease) -> Lease | None:
        """One delivery attempt; the owner's next event if this one is settled and it has one."""
        now = self.clock()
        if lease.endpoint == FEED_ENDPOINT:
            if lease.event:
                await self.outbox.append_feed(lease.event, self.config.feed_max)
            return await self._done(lease, now)
        endpoint = self.endpoints.get(lease.endpoint)
        if not lease.event or endpoint is None or lease.endpoint in self._gone:
            reason = "gone" if lease.endpoint in self._gone else "event_missing"
            return await self._give_up(lease, reason, "")
        envelope = _envelope.decode(lease.event)
        status = await self._send(endpoint, envelope.id, lease.event)
        now = self.clock()
        self.observer.attempt(endpoint.name, status)
        if status.isdigit() and 200 <= int(status) < 300:
            self.observer.delivered(endpoint.name, max(0.0, now - _epoch(envelope.occurred_at)))
            return await self._done(lease, now)
        if status == "410":
            log.warning("endpoint %s answered 410 Gone: nothing more is sent to it", endpoint.name)
            await self.outbox.mark_gone(endpoint.name, _iso(now))
            self._gone.add(endpoint.name)
            return await self._give_up(lease, "gone", status)
        first = lease.first_attempt_ms / 1000 if lease.first_attempt_ms else now
        if now - first >= self.config.retry_hours * 3600:
            return await self._give_up(lease, "retries_exhausted", status)
        # Exponential backoff with full jitter (0 .. base * 2^attempts, capped).
        ceiling = min(self.config.retry_cap_s, self.config.retry_base_s * 2**lease.attempts)
        retry_at = now + random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
        await self.outbox.ack(lease, now_ms=int(now * 1000), retry_at_ms=int(retry_at * 1000))
        self._due_at(lease.partition, int(retry_at * 1000))
        return None

    async def _done(self, lease: Lease, now: float) -> Lease | None:
        lease_end = int((now + self.config.visibility_s) * 1000)
        outcome = await self.outbox.ack(lease, now_ms=int(now * 1000), take_next_ms=lease_end)
        if isinstance(outcome, Lease):
            return outcome
        if outcome == 2:
            self._due_now(lease.partition)  # the owner's next event is due at once
        return None

    def _due_now(self, partition: int) -> None:
        self._next_due[partition] = 0

    def _due_at(self, partition: int, at_ms: int) -> None:
        self._next_due[partition] = min(self._next_due.get(partition, at_ms), at_ms)

    async def _give_up(self, lease: Lease, reason: str, last_status: str) -> Lease | None:
        # Dead letter first: a crash in between leaves the event queued (sent again), not lost.
        await self.outbox.dead_letter(lease, reason, last_status)
        self.observer.dead_letter(lease.endpoint, reason)
        return await self._done(lease, self.clock())

    async def _send(self, endpoint: WebhookEndpoint, msg_id: str, body: bytes) -> str:
        """POST once; the status as text, or the error's name. The answer's body is not read."""
        headers = signing.headers(endpoint.secrets, msg_id, int(self.clock()), body)
        try:
            async with asyncio.timeout(self.config.total_timeout_s):
                async with self._http.stream(
                    "POST", endpoint.url, content=body, headers=headers
                ) as r:
                    return str(r.status_code)
        except TimeoutError:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__

    async def _report_length(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(*_REDIS_DOWN):
                self.observer.outbox_length(await self.outbox.outbox_length())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 15)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
