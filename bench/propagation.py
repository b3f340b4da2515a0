"""Device-to-device propagation: ``POST /v1/cart/lines`` on instance A until the matching event
frame arrives on a websocket connected to instance B, beside its floor, a bare Redis ``PUBLISH``
to a ``SUBSCRIBE``d client on the same redis-server, paced and counted the same way.

Both clocks are one ``time.perf_counter_ns`` in one asyncio loop: the HTTP client, the
websockets and the Redis clients all live in this process. A send is stamped just before the
request goes out, a receipt when its frame is handed to us; they are matched by the revision the
POST answered with (per customer) or by the message's sequence number (the floor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from tests.support.processes import TEST_SECRET, service_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.harness import REPEATS, Cores, Report, processes
from bench.http1 import Http1Client, ProtocolError
from bench.load import Pace, paced
from bench.stats import STATS, Key, Latency, Ledger, Series, ratio
from cartsync.auth.tokens import TokenIssuer, TokenKeys
from cartsync.domain.principal import Role
from cartsync.settings import Settings

NAME = "propagation"
CUSTOMERS = 8
"""Customers the mutations are spread over, round robin; each has one socket on instance B."""
DRAIN_S = 5.0
"""After the last send returned, the longest wait for receipts still on their way."""
IO_TIMEOUT_S = 10.0
"""Longest wait for one handshake, hello or warm-up frame."""


@dataclass(frozen=True)
class Plan:
    name: str
    rates: tuple[int, ...]
    count: int
    max_s: float
    repeats: int
    warmup: int


FULL = Plan(name="full", rates=(50, 200), count=400, max_s=20.0, repeats=REPEATS, warmup=100)
QUICK = Plan(name="quick", rates=(50, 200), count=100, max_s=5.0, repeats=REPEATS, warmup=40)


@dataclass(frozen=True)
class Run:
    latency: Latency
    pace: Pace
    errors: int
    post: Latency | None = None
    """cartsync only: from the same send stamp until the 201 was read, on instance A."""


# The floor: PUBLISH to SUBSCRIBE on the same redis-server ----------------------------------


async def floor_run(redis_url: str, rate: int, count: int, max_s: float) -> Run:
    channel = f"bench:floor:{uuid.uuid4().hex}"
    ledger = Ledger()
    errors = 0
    async with (
        aioredis.Redis.from_url(redis_url) as publisher,
        aioredis.Redis.from_url(redis_url) as subscriber,
        subscriber.pubsub() as pubsub,
    ):
        await pubsub.subscribe(channel)
        confirmed = await pubsub.get_message(timeout=IO_TIMEOUT_S)
        if confirmed is None or confirmed["type"] != "subscribe":
            raise RuntimeError(f"no subscribe confirmation on {channel}: {confirmed!r}")

        async def read() -> None:
            for _ in range(count + 100):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                now = time.perf_counter_ns()
                if message is not None and message["type"] == "message":
                    ledger.on_received(("", int(message["data"])), now)

        async def send(i: int) -> None:
            nonlocal errors
            payload = str(i).encode()
            ledger.on_sent(("", i), time.perf_counter_ns())
            try:
                await publisher.publish(channel, payload)
            except aioredis.RedisError:
                errors += 1
                ledger.forget(("", i))

        reader = asyncio.create_task(read(), name="floor-reader")
        try:
            pace = await paced(rate, count, max_s, send)
            await ledger.settle(DRAIN_S)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await pubsub.unsubscribe(channel)
    return Run(ledger.latency(), pace, errors)


# cartsync: POST on A, event frame on a websocket to B --------------------------------------


class Tokens:
    """Customer tokens the benchmark's services accept (the test suite's signing secret)."""

    def __init__(self) -> None:
        settings = Settings.from_env(
            {"CARTSYNC_JWT_SECRETS": TEST_SECRET, "CARTSYNC_DATA_DIR": "/nonexistent"}
        )
        self._issuer = TokenIssuer(TokenKeys.from_settings(settings), settings)

    def customer(self, subject: str) -> str:
        return self._issuer.issue(Role.CUSTOMER, subject, ttl_s=3600)


async def _open_socket(
    stack: contextlib.AsyncExitStack, ws_url: str, token: str
) -> ClientConnection:
    """A synced socket: connected with the token as subprotocol, hello read, ``sync`` sent."""
    protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
    ws = await stack.enter_async_context(
        connect(
            ws_url, subprotocols=protocols, proxy=None, open_timeout=IO_TIMEOUT_S, close_timeout=2
        )
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S))
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello!r}")
    await ws.send(json.dumps({"type": "sync", "since": 0}))
    return ws


async def cartsync_run(
    a_url: str, b_ws_url: str, tokens: Tokens, rate: int, count: int, max_s: float
) -> Run:
    customers = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(CUSTOMERS)]
    headers = {
        c: {"Authorization": f"Bearer {tokens.customer(c)}", "Content-Type": "application/json"}
        for c in customers
    }
    ledger = Ledger()
    answered: list[int] = []
    unexpected: list[str] = []
    errors = 0

    async def read(customer: str, ws: ClientConnection) -> None:
        for _ in range(count + 1000):
            raw = await ws.recv()
            now = time.perf_counter_ns()
            frame = json.loads(raw)
            if frame.get("type") == "event":
                ledger.on_received((customer, int(frame["event"]["rev"])), now)
            elif frame.get("type") == "ping":
                await ws.send('{"type":"pong"}')
            elif len(unexpected) < 20:
                unexpected.append(str(frame.get("type")))

    a = urlsplit(a_url)
    if a.hostname is None or a.port is None:
        raise ValueError(f"instance A's URL needs a host and a port: {a_url}")
    http = Http1Client(a.hostname, a.port, max_connections=64, timeout_s=IO_TIMEOUT_S)
    async with http, contextlib.AsyncExitStack() as stack:
        sockets = [await _open_socket(stack, b_ws_url, tokens.customer(c)) for c in customers]

        async def post(customer: str, body: bytes) -> int | None:
            """The revision the 201 reports, or None for any other answer."""
            response = await http.post("/v1/cart/lines", body, headers[customer])
            if response.status != 201:
                return None
            return int(json.loads(response.body)["rev"])

        async def send(i: int) -> None:
            nonlocal errors
            customer = customers[i % len(customers)]
            body = b'{"sku":"sku-%d"}' % i
            started = time.perf_counter_ns()
            try:
                rev = await post(customer, body)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
                rev = None
            if rev is None:
                errors += 1
                return
            answered.append(time.perf_counter_ns() - started)
            ledger.on_sent((customer, rev), started)

        async with asyncio.TaskGroup() as group:
            readers = [
                group.create_task(read(c, ws), name=f"reader-{c}")
                for c, ws in zip(customers, sockets, strict=True)
            ]
            try:
                # One unmeasured line per customer: connections open, sockets past their sync.
                warm: list[Key] = []
                for c in customers:
                    rev = await post(c, b'{"sku":"warm-up"}')
                    if rev is None:
                        raise RuntimeError("the warm-up POST was refused")
                    warm.append((c, rev))
                    ledger.on_sent((c, rev), time.perf_counter_ns())
                await ledger.settle(IO_TIMEOUT_S)
                if not ledger.has(warm):
                    raise RuntimeError("warm-up events did not arrive on instance B")
                ledger.clear()
                pace = await paced(rate, count, max_s, send)
                await ledger.settle(DRAIN_S)
            finally:
                for reader in readers:
                    reader.cancel()
    if unexpected:
        raise RuntimeError(f"frames other than events arrived: {unexpected}")
    return Run(ledger.latency(), pace, errors, post=Latency.of(answered))


# The whole measurement ---------------------------------------------------------------------


def run(quick: bool = False) -> Report:
    """Start Redis and two cartsync instances, measure every rate ``plan.repeats`` times."""
    plan = QUICK if quick else FULL
    cores = Cores.detect()
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        a = procs.service("cartsync A", service_env(server.url, Path(tmp) / "a"))
        b = procs.service("cartsync B", service_env(server.url, Path(tmp) / "b"))
        pinned = [*procs.notes, cores.pin_self()]
        b_ws_url = "ws" + b.url.removeprefix("http") + "/v1/ws"
        series = asyncio.run(_measure(plan, server.url, a.url, b_ws_url))
    return _report(plan, pinned, series)


async def _measure(
    plan: Plan, redis_url: str, a_url: str, b_ws_url: str
) -> dict[tuple[str, int], Series]:
    tokens = Tokens()
    series: dict[tuple[str, int], Series] = {}
    for rate in plan.rates:
        params = {"rate_per_s": rate, "count": plan.count, "max_s": plan.max_s}
        series["floor", rate] = Series(f"Redis PUBLISH→SUBSCRIBE @ {rate}/s", params)
        series["cartsync", rate] = Series(f"cartsync POST on A → event on B @ {rate}/s", params)
        series["post", rate] = Series(f"cartsync POST on A → 201 read @ {rate}/s", params)
    # Unmeasured: Lua scripts loaded, imports done, sockets and pools opened once.
    await floor_run(redis_url, max(plan.rates), plan.warmup, plan.max_s)
    await cartsync_run(a_url, b_ws_url, tokens, max(plan.rates), plan.warmup, plan.max_s)
    for _ in range(plan.repeats):
        for rate in plan.rates:  # floor and cartsync side by side, so noise hits both alike
            floor = await floor_run(redis_url, rate, plan.count, plan.max_s)
            cart = await cartsync_run(a_url, b_ws_url, tokens, rate, plan.count, plan.max_s)
            for kind, result in (("floor", floor), ("cartsync", cart)):
                series[kind, rate].runs.append(result.latency)
                series[kind, rate].paces.append(result.pace)
                if result.post is not None:
                    series["post", rate].runs.append(result.post)
                    series["post", rate].paces.append(result.pace)
                if result.errors:
                    raise RuntimeError(f"{kind} @ {rate}/s: {result.errors} sends failed")
    return series


def _report(plan: Plan, pinned: list[str], series: dict[tuple[str, int], Series]) -> Report:
    headers = ["rate", "path", "runs x n", "lost", "p50 ms", "p99 ms", "max ms", "achieved /s"]
    rows: list[list[str]] = []
    summaries: list[str] = []
    for rate in plan.rates:
        floor, cart = series["floor", rate], series["cartsync", rate]
        paths = (
            ("Redis PUBLISH → SUBSCRIBE (floor)", floor),
            ("cartsync POST on A → event on B", cart),
            ("for comparison: POST → 201 read on A", series["post", rate]),
        )
        for kind, s in paths:
            cells = []
            for stat in STATS:
                cell = s.spread(stat).cell()
                if s is not floor:
                    cell += f" = {ratio(s.spread(stat).median, floor.spread(stat).median)}"
                cells.append(cell)
            achieved = min(p.achieved_per_s for p in s.paces)
            rows.append(
                [
                    f"{rate}/s",
                    kind,
                    f"{len(s.runs)} x {s.runs[0].n}" if s.runs else "0",
                    str(sum(r.lost for r in s.runs)),
                    *cells,
                    f"≥{achieved:.0f}",
                ]
            )
        summaries.append(
            f"{rate}/s: "
            + ", ".join(
                f"{stat.removesuffix('_ms')} {cart.spread(stat).median:.2f} ms = "
                f"{ratio(cart.spread(stat).median, floor.spread(stat).median)} floor "
                f"({floor.spread(stat).median:.2f} ms)"
                for stat in STATS
            )
        )
    notes = [
        f"{plan.count} sends per run at each rate (at most {plan.max_s:.0f} s), "
        f"{plan.repeats} runs, {CUSTOMERS} customers round robin; "
        "cells: median run (lowest-highest run); cartsync cells also as a multiple of the floor",
        *(f"pinned: {line}" for line in pinned),
        *summaries,
    ]
    data = {
        "plan": {
            "name": plan.name,
            "rates": list(plan.rates),
            "count": plan.count,
            "max_s": plan.max_s,
            "repeats": plan.repeats,
            "customers": CUSTOMERS,
        },
        "pinned": pinned,
        "series": [s.summary() for s in series.values()],
    }
    title = "Device-to-device propagation (POST on A → websocket event on B)"
    return Report(NAME, title, headers, rows, notes, data)
