"""Every way a socket can end releases everything its session held.

1,000 sockets (``CARTSYNC_SOAK=1``: 10,000) open, sync and end: the client closes, the client's
TCP connection is reset, the client breaks the protocol right after ``sync``, the customer
revokes the staff grant a socket runs on (4403; also before that socket sent ``sync``), and
Redis goes away under open sockets (they close 1013 or stay and carry on). Afterwards the
service is where it started: sockets gauge, pub/sub channels, asyncio tasks, open descriptors,
Redis connections, and every customer can open the per-owner limit's worth of sockets again.
Last, SIGTERM on a second service process closes all of its sockets with 1001.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import Tokens
from tests.reliability.conftest import (
    CLOSE_WITHIN_S,
    SETTLE_S,
    SOAK,
    Vitals,
    bearer,
    dial,
    ending,
    fds_to_port,
    next_frame,
    redis_clients,
    running,
    settle,
    vitals,
    watch,
)
from tests.support.processes import RedisProcess, ServiceProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SOCKETS = 10_000 if SOAK else 1_000
OUTAGE_SOCKETS = 100
"""Of SOCKETS, this many are open while Redis is stopped and started again."""
CUSTOMERS = 50
"""One worker per customer, so no customer ever nears the per-owner limit on its own."""
MAX_PER_OWNER = 20
DRAIN_SOCKETS = 30
STORE = "store-rel"
TOLERANCE = {"tasks": 3, "fds": 2, "redis": 5}
POOL = 16
"""CARTSYNC_REDIS_MAX_CONNECTIONS for the test's service."""
PUBSUB_CLIENTS = 2
"""Connections besides the pool's: the hub's pub/sub, and this test's own client."""
"""How far above the baseline a count may settle. Descriptors are counted without the Redis
pool's: it grows with concurrency, and keeps connections a restarted Redis dropped until it
next uses them; Redis's own count of clients gets the same slack."""
IDLE_HTTP_S = 6.0
"""Hypercorn closes an idle HTTP connection after 5 s: the baseline is taken without any."""

WAYS = (
    "client close",
    "tcp reset",
    "garbage after sync",
    "grant revoked",
    "grant revoked unsynced",
)
WEIGHTS = (8, 6, 5, 1, 1)


class Churn:
    """Opens sockets and ends them in one of WAYS; counts what went wrong."""

    def __init__(self, svc: ServiceProcess, http: httpx.AsyncClient, tokens: Tokens) -> None:
        self.svc = svc
        self.http = http
        self.tokens = tokens
        self.staff = tokens.token("staff", "emp-rel", store=STORE)
        self.done: collections.Counter[str] = collections.Counter()
        self.problems: collections.Counter[str] = collections.Counter()

    async def one(self, way: str, customer: str) -> None:
        ways: dict[str, Callable[[str], Awaitable[str]]] = {
            "client close": self.client_close,
            "tcp reset": self.tcp_reset,
            "garbage after sync": self.garbage_after_sync,
            "grant revoked": self.grant_revoked,
            "grant revoked unsynced": self.grant_revoked_unsynced,
        }
        try:
            problem = await ways[way](customer)
        except (ConnectionClosed, TimeoutError, OSError, AssertionError) as exc:
            problem = f"{type(exc).__name__}: {str(exc)[:100]}"
        self.done[way] += 1
        if problem:
            self.problems[f"{way}: {problem}"] += 1

    async def synced(self, ws: ClientConnection) -> None:
        hello = await next_frame(ws)
        assert hello["type"] == "hello", hello
        await ws.send('{"type": "sync"}')
        snap = await next_frame(ws)
        assert snap["type"] == "snapshot", snap

    def token(self, customer: str) -> str:
        return self.tokens.token("customer", customer)

    async def client_close(self, customer: str) -> str:
        async with dial(self.svc, subprotocols=bearer(self.token(customer))) as ws:
            await self.synced(ws)
            await ws.close()
            if ws.close_code != 1000:
                return f"close handshake ended with {ws.close_code}"
        return ""

    async def tcp_reset(self, customer: str) -> str:
        async with dial(self.svc, subprotocols=bearer(self.token(customer))) as ws:
            await self.synced(ws)
            raw = ws.transport.get_extra_info("socket")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()  # close() with a zero linger: RST, no close frame, no FIN
        return ""

    async def garbage_after_sync(self, customer: str) -> str:
        async with dial(self.svc, subprotocols=bearer(self.token(customer))) as ws:
            hello = await next_frame(ws)
            assert hello["type"] == "hello", hello
            await ws.send('{"type": "sync"}')
            await ws.send("sync, then not JSON")
            end = await ending(ws, CLOSE_WITHIN_S)
            if end.code != 1007 or not end.reason:
                return f"closed {end}" if end.code else str(end)
        return ""

    async def grant_revoked_unsynced(self, customer: str) -> str:
        """The tablet opened its socket but has not sent ``sync`` yet: revoking closes it too."""
        return await self.grant_revoked(customer, sync=False)

    async def grant_revoked(self, customer: str, *, sync: bool = True) -> str:
        me = {"Authorization": f"Bearer {self.token(customer)}"}
        r = await self.http.post("/v1/handoffs", headers=me)
        assert r.status_code == 201, r.text
        code = r.json()["code"]
        staff = {"Authorization": f"Bearer {self.staff}"}
        r = await self.http.post(f"/v1/handoffs/{code}/claim", headers=staff)
        assert r.status_code == 201, r.text
        grant = r.json()["grant"]["id"]
        async with dial(self.svc, subprotocols=bearer(self.staff, f"grant.{grant}")) as ws:
            if sync:
                await self.synced(ws)
            else:
                hello = await next_frame(ws)
                assert hello["type"] == "hello", hello
            r = await self.http.delete(f"/v1/grants/{grant}", headers=me)
            assert r.status_code == 200, r.text
            end = await ending(ws, CLOSE_WITHIN_S)
            if end.code != 4403 or not end.reason:
                return f"closed {end}" if end.code else str(end)
        return ""


async def outage(
    svc: ServiceProcess, redis: RedisProcess, customers: list[str], tokens: Tokens
) -> collections.Counter[str]:
    """Sockets open and synced while Redis stops and starts again (empty): each must end
    with 1013 or stay usable (answer a ping) and then close cleanly."""
    outcomes: collections.Counter[str] = collections.Counter()
    async with contextlib.AsyncExitStack() as stack:
        sockets: list[ClientConnection] = []
        for n in range(OUTAGE_SOCKETS):
            token = tokens.token("customer", customers[n % len(customers)])
            ws = await stack.enter_async_context(dial(svc, subprotocols=bearer(token)))
            try:
                hello = await next_frame(ws)
                assert hello["type"] == "hello", hello
                await ws.send('{"type": "sync"}')
                assert (await next_frame(ws))["type"] == "snapshot"
            except (ConnectionClosed, TimeoutError) as exc:
                outcomes[f"not opened: {exc}"[:120]] += 1  # e.g. the per-owner limit is eaten
                continue
            sockets.append(ws)

        redis.stop()
        await asyncio.sleep(2.0)  # open sockets meet the outage (hub reconnecting, pings)
        redis.start()

        async def after(ws: ClientConnection) -> str:
            try:
                await ws.send('{"type": "ping"}')
                async with asyncio.timeout(15):
                    for _ in range(100):
                        if (await next_frame(ws, wait_s=15)) == {"type": "pong"}:
                            break
                await ws.close()
                return (
                    "stayed, answered, closed 1000"
                    if ws.close_code == 1000
                    else (f"stayed, then close handshake {ws.close_code}")
                )
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                reason = closed.rcvd.reason if closed.rcvd else ""
                return f"closed {code}" + ("" if reason else " without a reason")
            except TimeoutError:
                return "hang: no pong and no close within 15 s"

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(after(ws)) for ws in sockets]
        outcomes.update(t.result() for t in tasks)
    return outcomes


async def full_house(svc: ServiceProcess, token: str) -> str:
    """The per-owner limit's worth of sockets at once; '' when all get their hello."""
    async with contextlib.AsyncExitStack() as stack:
        for n in range(MAX_PER_OWNER):
            ws = await stack.enter_async_context(dial(svc, subprotocols=bearer(token)))
            try:
                frame = await next_frame(ws)
            except ConnectionClosed as closed:
                return f"socket {n + 1} of {MAX_PER_OWNER} closed: {closed.rcvd}"
            if frame["type"] != "hello":
                return f"socket {n + 1}: {frame}"
    return ""


async def drained(redis: RedisProcess, data_dir: Path, tokens: Tokens) -> tuple[str, int | None]:
    """SIGTERM on a service with sockets open: every one gets 1001, the process exits."""
    with running(redis.url, data_dir) as svc:
        assert svc.proc is not None
        customers = [f"drain-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            sockets = []
            for n in range(DRAIN_SOCKETS):
                token = tokens.token("customer", customers[n % len(customers)])
                ws = await stack.enter_async_context(dial(svc, subprotocols=bearer(token)))
                assert (await next_frame(ws))["type"] == "hello"
                await ws.send('{"type": "sync"}')
                assert (await next_frame(ws))["type"] == "snapshot"
                sockets.append(ws)
            svc.proc.send_signal(signal.SIGTERM)
            endings = await asyncio.gather(*(ending(ws, CLOSE_WITHIN_S) for ws in sockets))
        codes = collections.Counter(str(e) for e in endings)
        try:
            exit_code: int | None = await asyncio.to_thread(svc.proc.wait, 15)
        except Exception:
            exit_code = None
        wrong = {k: v for k, v in codes.items() if not k.startswith("1001 ") or k == "1001 ''"}
        return (
            f"{dict(codes)}" if wrong else f"all {DRAIN_SOCKETS} closed 1001",
            exit_code,
        )


async def test_every_way_a_socket_ends_releases_its_session(
    own_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    run = uuid.uuid4().hex[:8]
    customers = [f"rel-{run}-{n}" for n in range(CUSTOMERS)]
    settings = {
        "CARTSYNC_REDIS_TIMEOUT_SECONDS": "0.5",
        "CARTSYNC_REDIS_MAX_CONNECTIONS": str(POOL),
        "CARTSYNC_HUB_HEARTBEAT_SECONDS": "0.5",
    }
    with running(own_redis.url, tmp_path / "service", **settings) as svc:
        async with watch(svc) as obs, httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
            churn = Churn(svc, http, tokens)
            plan = [w for w, k in zip(WAYS, WEIGHTS, strict=True) for _ in range(k)]

            async def worker(n: int, count: int) -> None:
                for i in range(n, count, CUSTOMERS):
                    await churn.one(plan[i % len(plan)], customers[n])

            async def churn_all(count: int) -> None:
                async with asyncio.TaskGroup() as tg:
                    for n in range(CUSTOMERS):
                        tg.create_task(worker(n, count))

            # Warm up at the same concurrency (Redis connection pools grow to it), then take
            # the baseline.
            await churn_all(4 * CUSTOMERS)
            await asyncio.sleep(IDLE_HTTP_S)
            before = await vitals(svc, obs)
            before_pool = fds_to_port(svc, own_redis.port)
            redis_before = redis_clients(own_redis)
            churn.done.clear()
            warm_problems = dict(churn.problems)

            started = time.monotonic()
            await churn_all(SOCKETS - OUTAGE_SOCKETS)
            churn_s = time.monotonic() - started
            outage_outcomes = await outage(svc, own_redis, customers[:10], tokens)
            total_s = time.monotonic() - started

            # Afterwards: everything back where it started (bounded wait to settle).
            last: list[Vitals] = []

            async def released() -> bool:
                now = await vitals(svc, obs)
                last[:] = [now]
                pool = fds_to_port(svc, own_redis.port)
                return (
                    now.connections == before.connections
                    and now.channels == before.channels
                    and now.tasks <= before.tasks + TOLERANCE["tasks"]
                    and now.fds - pool <= before.fds - before_pool + TOLERANCE["fds"]
                    # Redis clients: back where they were, or at most the pool's bound (a
                    # burst fills the pool up to it; it never opens more).
                    and redis_clients(own_redis)
                    <= max(redis_before + TOLERANCE["redis"], POOL + PUBSUB_CLIENTS)
                )

            settled = await settle(released, within_s=SETTLE_S)
            after = last[0]
            redis_after = redis_clients(own_redis)
            after_pool = fds_to_port(svc, own_redis.port)
            limits = {c: await full_house(svc, tokens.token("customer", c)) for c in customers}

    bad_outage = {k: v for k, v in outage_outcomes.items() if not _clean_outage_end(k)}
    print(
        f"\nsession release: {sum(churn.done.values()) + OUTAGE_SOCKETS} sockets in "
        f"{total_s:.1f} s ({dict(churn.done)} in {churn_s:.1f} s; redis outage under "
        f"{OUTAGE_SOCKETS}: {dict(outage_outcomes)}); {sum(churn.problems.values())} ended "
        f"wrongly; baseline {before.line()} (to redis {before_pool}) redis_clients="
        f"{redis_before}; after {after.line()} (to redis {after_pool}) redis_clients="
        f"{redis_after}"
    )
    drain, exit_code = await drained(own_redis, tmp_path / "drain", tokens)
    print(f"session release, SIGTERM with {DRAIN_SOCKETS} sockets open: {drain}, exit {exit_code}")
    for line, count in churn.problems.most_common(15):
        print(f"  {count:4d} x {line}")

    assert not churn.problems, "sockets that did not end as documented: " + json.dumps(
        dict(churn.problems.most_common(8))
    )
    assert not bad_outage, f"sockets under a Redis outage: {bad_outage}"
    assert not warm_problems, f"while warming up: {warm_problems}"
    assert settled, (
        f"not released: baseline {before.line()} (to redis {before_pool}) "
        f"redis_clients={redis_before}; after {SETTLE_S:.0f} s {after.line()} "
        f"(to redis {after_pool}) redis_clients={redis_after}"
    )
    assert not any(limits.values()), {c: p for c, p in limits.items() if p}
    assert drain == f"all {DRAIN_SOCKETS} closed 1001", f"SIGTERM: {drain}"
    assert exit_code == 0, f"the drained service exited with {exit_code}"


def _clean_outage_end(outcome: str) -> bool:
    return outcome == "stayed, answered, closed 1000" or outcome == "closed 1013"
