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
import itertools
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

from bench import floors, sio
from bench.harness import OFFERS, REPEATS, Cores, Report, offer, processes
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
OPENING = 32
"""Websockets being opened at once."""


@dataclass(frozen=True)
class Plan:
    name: str
    rates: tuple[int, ...]
    count: int
    max_s: float
    repeats: int
    warmup: int

    ramp_s: float = 3.0
    """Seconds of sends per run at each ramp rate."""
    many: int = 1000
    """Customers in the many-customer run."""
    many_s: float = 10.0
    ramp: tuple[int, ...] = (200, 300, 450, 700, 1000)
    """Rising paced rates; the ramp stops after the first whose median p99 passes RAMP_P99_MS."""


FULL = Plan(name="full", rates=(50, 200), count=400, max_s=20.0, repeats=REPEATS, warmup=100)
QUICK = Plan(
    name="quick",
    rates=(50, 200),
    count=100,
    max_s=5.0,
    repeats=REPEATS,
    warmup=40,
    ramp_s=0.5,
    many=200,
    many_s=2.0,
)
SMOKE = Plan(
    name="smoke",
    rates=(50,),
    count=20,
    max_s=5.0,
    repeats=1,
    warmup=5,
    ramp_s=0.1,
    many=20,
    many_s=1.0,
    ramp=(200,),
)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}
RAMP_P99_MS = 50.0
PEER_OFFERS = (("socket.io", "deflate offered"), ("socket.io, no deflate", "no deflate"))
"""The Socket.IO peer's series and how its client opens."""
MANY_RATE = 0.2
"""Writes per second per customer in the many-customer run."""


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
    stack: contextlib.AsyncExitStack, ws_url: str, token: str, deflate: bool = True
) -> ClientConnection:
    """A synced socket: connected with the token as subprotocol, hello read, ``sync`` sent;
    offering permessage-deflate, as browsers do, unless ``deflate`` is false."""
    protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
    ws = await stack.enter_async_context(
        connect(
            ws_url,
            subprotocols=protocols,
            proxy=None,
            open_timeout=IO_TIMEOUT_S,
            close_timeout=2,
            compression=offer(deflate),
        )
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S))
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello!r}")
    await ws.send(json.dumps({"type": "sync", "since": 0}))
    return ws


async def _open_many(
    stack: contextlib.AsyncExitStack,
    ws_url: str,
    tokens: Tokens,
    customers: list[str],
    deflate: bool = True,
) -> list[ClientConnection]:
    """One synced socket per customer, ``OPENING`` handshakes at a time, in customer order."""
    gate = asyncio.Semaphore(OPENING)
    sockets: dict[str, ClientConnection] = {}

    async def open_one(customer: str) -> None:
        async with gate:
            token = tokens.customer(customer)
            sockets[customer] = await _open_socket(stack, ws_url, token, deflate)

    async with asyncio.TaskGroup() as group:
        for customer in customers:
            group.create_task(open_one(customer))
    return [sockets[c] for c in customers]


async def cartsync_run(
    a_url: str,
    b_ws_url: str,
    tokens: Tokens,
    rate: int,
    count: int,
    max_s: float,
    customer_count: int = CUSTOMERS,
    deflate: bool = True,
) -> Run:
    customers = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(customer_count)]
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
        sockets = await _open_many(stack, b_ws_url, tokens, customers, deflate)

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

                async def warm_up(c: str) -> None:
                    rev = await post(c, b'{"sku":"warm-up"}')
                    if rev is None:
                        raise RuntimeError("the warm-up POST was refused")
                    warm.append((c, rev))
                    ledger.on_sent((c, rev), time.perf_counter_ns())

                async with asyncio.TaskGroup() as warming:
                    for c in customers:
                        warming.create_task(warm_up(c))
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


# The HTTP floor: the same POST answered by the floor app, no event ----------------------


async def http_floor_run(url: str, rate: int, count: int, max_s: float) -> Run:
    """POST → 201 read on bench/floors/minimal_app.py (Starlette on Hypercorn, one small
    script), paced as cartsync's: what the server parts cartsync is built on take to answer one
    write before any event leaves, against which the POST leg of cartsync's path is read."""
    owners = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(CUSTOMERS)]
    answered: list[int] = []
    errors = 0
    where = urlsplit(url)
    if where.hostname is None or where.port is None:
        raise ValueError(f"the floor app's URL needs a host and a port: {url}")
    http = Http1Client(where.hostname, where.port, max_connections=64, timeout_s=IO_TIMEOUT_S)

    async def send(i: int) -> None:
        nonlocal errors
        headers = {"Content-Type": "application/json", "X-Owner": owners[i % len(owners)]}
        started = time.perf_counter_ns()
        try:
            response = await http.post("/v1/cart/lines", b'{"sku":"sku-%d"}' % i, headers)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
            errors += 1
            return
        if response.status != 201:
            errors += 1
            return
        answered.append(time.perf_counter_ns() - started)

    async with http:
        pace = await paced(rate, count, max_s, send)
    return Run(Latency.of(answered), pace, errors)


# The Socket.IO peer: POST on instance 1 → emit through the Redis adapter → instance 2 ------


async def socketio_run(
    one_url: str, two_url: str, rate: int, count: int, max_s: float, deflate: bool = True
) -> Run:
    rooms = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(CUSTOMERS)]
    ledger = Ledger()
    errors = 0
    one = urlsplit(one_url)
    assert one.hostname is not None
    assert one.port is not None
    http = Http1Client(one.hostname, one.port, max_connections=64, timeout_s=IO_TIMEOUT_S)
    headers = {"Content-Type": "application/json"}

    async def read(room: str, ws: ClientConnection) -> None:
        for _ in range(count + 1000):
            payload = await sio.next_event(ws)
            ledger.on_received((room, int(payload["seq"])), time.perf_counter_ns())

    async def emit(room: str, seq: int) -> bool:
        body = b'{"sku":"sku-%d","seq":%d}' % (seq, seq)
        try:
            response = await http.post(f"/rooms/{room}/events", body, headers)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
            return False
        return response.status == 201

    async def send(i: int) -> None:
        nonlocal errors
        room = rooms[i % len(rooms)]
        ledger.on_sent((room, i), time.perf_counter_ns())
        if not await emit(room, i):
            errors += 1
            ledger.forget((room, i))

    async with http, contextlib.AsyncExitStack() as stack:
        sockets = [await sio.open_socket(stack, sio.ws_url(two_url), r, deflate) for r in rooms]
        async with asyncio.TaskGroup() as group:
            readers = [group.create_task(read(r, ws)) for r, ws in zip(rooms, sockets, strict=True)]
            try:
                for n, room in enumerate(rooms):  # unmeasured, as cartsync's warm-up
                    ledger.on_sent((room, -1 - n), time.perf_counter_ns())
                    if not await emit(room, -1 - n):
                        raise RuntimeError("the warm-up emit was refused")
                await ledger.settle(IO_TIMEOUT_S)
                ledger.clear()
                pace = await paced(rate, count, max_s, send)
                await ledger.settle(DRAIN_S)
            finally:
                for reader in readers:
                    reader.cancel()
    return Run(ledger.latency(), pace, errors)


# The whole measurement ---------------------------------------------------------------------


def run(plan_name: str = "full") -> Report:
    """Start Redis and two cartsync instances, measure every rate ``plan.repeats`` times."""
    plan = PLANS[plan_name]
    cores = Cores.detect()
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        a = procs.service("cartsync A", service_env(server.url, Path(tmp) / "a"))
        b = procs.service("cartsync B", service_env(server.url, Path(tmp) / "b"))
        http_floor = floors.minimal_app(procs, server.url)
        peers = None
        if sio.available() is None:
            peers = (
                sio.start(procs, server.url, "socket.io peer 1").url,
                sio.start(procs, server.url, "socket.io peer 2").url,
            )
        pinned = [*procs.notes, cores.pin_self()]
        b_ws_url = "ws" + b.url.removeprefix("http") + "/v1/ws"
        series = asyncio.run(_measure(plan, server.url, a.url, b_ws_url, peers, http_floor.url))
    return _report(plan, pinned, series)


async def _measure(
    plan: Plan,
    redis_url: str,
    a_url: str,
    b_ws_url: str,
    peers: tuple[str, str] | None,
    http_floor_url: str,
) -> dict[tuple[str, int], Series]:
    tokens = Tokens()
    series: dict[tuple[str, int], Series] = {}
    for rate in plan.rates:
        params = {"rate_per_s": rate, "count": plan.count, "max_s": plan.max_s}
        series["floor", rate] = Series(f"Redis PUBLISH→SUBSCRIBE @ {rate}/s", params)
        series["cartsync", rate] = Series(f"cartsync POST on A → event on B @ {rate}/s", params)
        series["cartsync, no deflate", rate] = Series(
            f"cartsync POST on A → event on B, client not offering deflate @ {rate}/s", params
        )
        series["post", rate] = Series(f"cartsync POST on A → 201 read @ {rate}/s", params)
        series["http floor", rate] = Series(f"floor app POST → 201 read @ {rate}/s", params)
    # Unmeasured: Lua scripts loaded, imports done, sockets and pools opened once.
    await floor_run(redis_url, max(plan.rates), plan.warmup, plan.max_s)
    await cartsync_run(a_url, b_ws_url, tokens, max(plan.rates), plan.warmup, plan.max_s)
    await http_floor_run(http_floor_url, max(plan.rates), plan.warmup, plan.max_s)
    for _ in range(plan.repeats):
        for rate in plan.rates:  # floor and cartsync side by side, so noise hits both alike
            floor = await floor_run(redis_url, rate, plan.count, plan.max_s)
            cart = await cartsync_run(a_url, b_ws_url, tokens, rate, plan.count, plan.max_s)
            plain = await cartsync_run(
                a_url, b_ws_url, tokens, rate, plan.count, plan.max_s, deflate=False
            )
            answer = await http_floor_run(http_floor_url, rate, plan.count, plan.max_s)
            measured = (
                ("floor", floor),
                ("cartsync", cart),
                ("cartsync, no deflate", plain),
                ("http floor", answer),
            )
            for kind, result in measured:
                series[kind, rate].runs.append(result.latency)
                series[kind, rate].paces.append(result.pace)
                if result.post is not None and kind == "cartsync":
                    series["post", rate].runs.append(result.post)
                    series["post", rate].paces.append(result.pace)
                if result.errors:
                    raise RuntimeError(f"{kind} @ {rate}/s: {result.errors} sends failed")
    if peers is not None:
        await socketio_run(*peers, max(plan.rates), plan.warmup, plan.max_s)  # unmeasured
        for _ in range(plan.repeats):
            for rate, (kind, how) in itertools.product(plan.rates, PEER_OFFERS):
                sio_run = await socketio_run(
                    *peers, rate, plan.count, plan.max_s, deflate=OFFERS[how]
                )
                if sio_run.errors:
                    raise RuntimeError(f"{kind} @ {rate}/s: {sio_run.errors} sends failed")
                params = {"rate_per_s": rate, "count": plan.count, "max_s": plan.max_s}
                label = f"Socket.IO POST on 1 → event on 2, {how} @ {rate}/s"
                series.setdefault((kind, rate), Series(label, params))
                series[kind, rate].runs.append(sio_run.latency)
                series[kind, rate].paces.append(sio_run.pace)
    await _ramp(plan, redis_url, a_url, b_ws_url, tokens, series)
    await _many(plan, redis_url, a_url, b_ws_url, tokens, series)
    return series


async def _ramp(
    plan: Plan,
    redis_url: str,
    a_url: str,
    b_ws_url: str,
    tokens: Tokens,
    series: dict[tuple[str, int], Series],
) -> None:
    """Rising rates until the median run's p99 passes ``RAMP_P99_MS`` (at most the plan's)."""
    for rate in plan.ramp:
        count = round(rate * plan.ramp_s)
        params = {"rate_per_s": rate, "count": count, "max_s": plan.ramp_s * 2}
        floor = series["ramp-floor", rate] = Series(f"floor @ {rate}/s", params)
        cart = series["ramp", rate] = Series(f"cartsync @ {rate}/s", params)
        errors = 0
        for _ in range(plan.repeats):
            f = await floor_run(redis_url, rate, count, plan.ramp_s * 2)
            c = await cartsync_run(a_url, b_ws_url, tokens, rate, count, plan.ramp_s * 2)
            for s, result in ((floor, f), (cart, c)):
                s.runs.append(result.latency)
                s.paces.append(result.pace)
            errors += c.errors
        cart.params["errors"] = errors
        if cart.spread("p99_ms").median > RAMP_P99_MS:
            break


async def _many(
    plan: Plan,
    redis_url: str,
    a_url: str,
    b_ws_url: str,
    tokens: Tokens,
    series: dict[tuple[str, int], Series],
) -> None:
    """Many customers, each with a REST writer on A and a socket on B, writing slowly."""
    rate = round(plan.many * MANY_RATE)
    count = round(rate * plan.many_s)
    params = {"customers": plan.many, "rate_per_s": rate, "count": count}
    floor = series["many-floor", plan.many] = Series(f"floor @ {rate}/s", params)
    cart = series["many", plan.many] = Series(f"{plan.many} customers @ {rate}/s", params)
    for _ in range(plan.repeats):
        f = await floor_run(redis_url, rate, count, plan.many_s * 2)
        c = await cartsync_run(
            a_url, b_ws_url, tokens, rate, count, plan.many_s * 2, customer_count=plan.many
        )
        if c.errors:
            raise RuntimeError(f"{plan.many} customers: {c.errors} sends failed")
        for s, result in ((floor, f), (cart, c)):
            s.runs.append(result.latency)
            s.paces.append(result.pace)


def _rows(rate: str, floor: Series, paths: list[tuple[str, Series]]) -> list[list[str]]:
    rows = []
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
                rate,
                kind,
                f"{len(s.runs)} x {s.runs[0].n}" if s.runs else "0",
                str(sum(r.lost for r in s.runs)),
                *cells,
                f"≥{achieved:.0f}",
            ]
        )
    return rows


def _summary(prefix: str, cart: Series, floor: Series) -> str:
    return f"{prefix}: " + ", ".join(
        f"{stat.removesuffix('_ms')} {cart.spread(stat).median:.2f} ms = "
        f"{ratio(cart.spread(stat).median, floor.spread(stat).median)} floor "
        f"({floor.spread(stat).median:.2f} ms)"
        for stat in STATS
    )


def _report(plan: Plan, pinned: list[str], series: dict[tuple[str, int], Series]) -> Report:
    headers = ["rate", "path", "runs x n", "lost", "p50 ms", "p99 ms", "max ms", "achieved /s"]
    rows: list[list[str]] = []
    summaries: list[str] = []
    for rate in plan.rates:
        floor, cart = series["floor", rate], series["cartsync", rate]
        paths = [
            ("Redis PUBLISH → SUBSCRIBE (floor)", floor),
            ("cartsync POST on A → event on B, deflate offered", cart),
            ("cartsync POST on A → event on B, no deflate", series["cartsync, no deflate", rate]),
            ("for comparison: POST → 201 read on A", series["post", rate]),
            (
                "for comparison: POST → 201 read on the floor app (Starlette on Hypercorn)",
                series["http floor", rate],
            ),
        ]
        for kind, how in PEER_OFFERS:
            if (kind, rate) in series:
                paths.append((f"Socket.IO POST on 1 → event on 2, {how}", series[kind, rate]))
        rows += _rows(f"{rate}/s", floor, paths)
        summaries.append(_summary(f"{rate}/s, deflate offered", cart, floor))
        summaries.append(
            _summary(f"{rate}/s, no deflate", series["cartsync, no deflate", rate], floor)
        )
        for kind, how in PEER_OFFERS:
            if (kind, rate) in series:
                summaries.append(_summary(f"{rate}/s, Socket.IO, {how}", series[kind, rate], floor))
        summaries.append(
            _summary(
                f"{rate}/s, floor app POST → 201 (no event)", series["http floor", rate], floor
            )
        )
    ramp = [rate for rate in plan.ramp if ("ramp", rate) in series]
    for rate in ramp:
        floor, cart = series["ramp-floor", rate], series["ramp", rate]
        errors = cart.params.get("errors", 0)
        label = "ramp: cartsync POST on A → event on B" + (f" ({errors} failed)" if errors else "")
        rows += _rows(f"{rate}/s", floor, [("ramp: floor", floor), (label, cart)])
    if ramp:
        top = series["ramp", ramp[-1]]
        passed = top.spread("p99_ms").median > RAMP_P99_MS
        summaries.append(
            f"ramp: p99 passed {RAMP_P99_MS:.0f} ms at {ramp[-1]}/s "
            f"({top.spread('p99_ms').median:.1f} ms)"
            if passed
            else f"ramp: p99 stayed under {RAMP_P99_MS:.0f} ms up to {ramp[-1]}/s, the last step"
        )
    if ("many", plan.many) in series:
        floor, cart = series["many-floor", plan.many], series["many", plan.many]
        rate = cart.params["rate_per_s"]
        label = f"{plan.many} customers x 2 devices: POST on A → event on B"
        rows += _rows(f"{rate}/s", floor, [("floor", floor), (label, cart)])
        summaries.append(_summary(f"{plan.many} customers @ {rate}/s", cart, floor))
    notes = [
        f"{plan.count} sends per run at each rate (at most {plan.max_s:.0f} s), "
        f"{plan.repeats} runs, {CUSTOMERS} customers round robin; "
        "cells: median run (lowest-highest run); cartsync cells also as a multiple of the floor",
        f"ramp: {plan.ramp_s} s of sends per run at each of {', '.join(map(str, plan.ramp))}/s, "
        f"8 customers, stopping after the first rate whose median p99 passes {RAMP_P99_MS:.0f} ms",
        f"many customers: {plan.many} customers, each a REST writer on A and a websocket on B, "
        f"{MANY_RATE}/s each ({plan.many_s:.0f} s per run)",
        "clients offer permessage-deflate (as browsers do) unless a row says `no deflate`; "
        "cartsync declines the offer (CARTSYNC_WS_COMPRESSION=off, the default); the ramp and "
        "many-customer runs offer it",
        "floor app: bench/floors/minimal_app.py on Hypercorn answering the same paced POSTs "
        "(one 3-command script, no token, no event): the least a write takes on the parts "
        "cartsync is built on, before any event leaves",
        "Socket.IO: two node instances with @socket.io/redis-adapter on the same Redis, "
        "POST /rooms/<room>/events on 1, 8 rooms with one socket each on 2",
        *(f"pinned: {line}" for line in pinned),
        *summaries,
    ]
    data = {
        "plan": vars(plan) | {"customers": CUSTOMERS, "many_rate": MANY_RATE},
        "pinned": pinned,
        "series": [s.summary() for s in series.values()],
    }
    title = "Device-to-device propagation (POST on A → websocket event on B)"
    return Report(NAME, title, headers, rows, notes, data)
