"""Fan-out: one event to 100 and 1,000 sockets of one owner on one cartsync instance, from the
``POST /v1/cart/lines`` until the last socket has the frame; beside its floor, one Redis
``PUBLISH`` to as many ``redis.asyncio`` subscribers (one connection each), and the Socket.IO
peer (``POST /rooms/<room>/events`` emitting to a room of as many sockets, same instance).

cartsync and the peer are each measured with a client that offers permessage-deflate (as
browsers do) and with one that does not, and cartsync once more with CARTSYNC_WS_COMPRESSION=on
(deflate offered). The same run measures what compression saves on a 200-line snapshot frame.

Before each event every socket already has a task waiting on it, so the clock starts with the
request and stops when the last waiting task is handed its frame. All clients are in this
process: the floor and the two servers pay the same client-side cost of reading N messages.
Once a server keeps up with that, the time says little about it; each server's CPU time over
the measured events, per socket and event, does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tests.support.processes import service_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench import sio
from bench.harness import OFFERS, REPEATS, Cores, Report, cpu_s, processes, raise_fd_limit
from bench.http1 import Http1Client
from bench.propagation import Tokens, _open_socket
from bench.stats import Latency, Spread, ratio
from cartsync.web.hypercorn_hooks import MEM_LEVEL, WINDOW_BITS

NAME = "fanout"
WAIT_S = 10.0
"""Longest wait for one event to reach every socket."""


@dataclass(frozen=True)
class Plan:
    name: str
    sizes: tuple[int, ...]
    events: int
    repeats: int


FULL = Plan(name="full", sizes=(100, 1000), events=20, repeats=REPEATS)
QUICK = Plan(name="quick", sizes=(100, 1000), events=3, repeats=REPEATS)
SMOKE = Plan(name="smoke", sizes=(10,), events=2, repeats=1)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}

Receive = Callable[[], Awaitable[int]]
"""Waits for the next event on one socket; the perf_counter_ns when it was handed over."""


class ServerCpu:
    """The server's CPU time over the measured events (not the sockets' opening), per socket
    and event: what the load generator's own floor hides once a server keeps up with it."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.us_per_socket_event: list[float] = []
        self.seconds = 0.0
        self.socket_events = 0

    async def measure(self, size: int, events: Callable[[], Awaitable[int]]) -> int:
        """Run ``events`` (which returns how many it made) and record its CPU per socket."""
        before = cpu_s(self.pid) if self.pid is not None else 0.0
        count = await events()
        if self.pid is not None and count:
            used = cpu_s(self.pid) - before
            self.us_per_socket_event.append(used * 1e6 / count / size)
            self.seconds += used
            self.socket_events += count * size
        return count

    def pooled_us(self) -> float | None:
        """Over every run together: /proc counts in 10 ms ticks, too coarse for one run."""
        return self.seconds * 1e6 / self.socket_events if self.socket_events else None


async def _one_event(receivers: list[Receive], trigger: Callable[[], Awaitable[None]]) -> int:
    """Nanoseconds from just before ``trigger`` until the last receiver had its event."""
    tasks = [asyncio.create_task(r()) for r in receivers]
    await asyncio.sleep(0.05)  # every task is now waiting in its recv
    started = time.perf_counter_ns()
    try:
        await trigger()
        async with asyncio.timeout(WAIT_S):
            stamps = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return max(stamps) - started


# The floor -----------------------------------------------------------------------------------


async def floor_runs(redis_url: str, size: int, events: int, repeats: int) -> list[Latency]:
    channel = f"bench:fanout:{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(aioredis.Redis.from_url(redis_url))
        pubsubs = []
        for _ in range(size):
            client = await stack.enter_async_context(aioredis.Redis.from_url(redis_url))
            pubsub = await stack.enter_async_context(client.pubsub())
            await pubsub.subscribe(channel)
            await pubsub.get_message(timeout=WAIT_S)  # the subscribe confirmation
            pubsubs.append(pubsub)

        def receiver(pubsub: Any) -> Receive:
            async def receive() -> int:
                for _ in range(100):
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and message["type"] == "message":
                        return time.perf_counter_ns()
                raise RuntimeError("no message among 100 reads")

            return receive

        async def trigger() -> None:
            await publisher.publish(channel, b'{"rev":1}')

        receivers = [receiver(p) for p in pubsubs]
        await _one_event(receivers, trigger)  # unmeasured
        return [
            Latency.of([await _one_event(receivers, trigger) for _ in range(events)])
            for _ in range(repeats)
        ]


# cartsync ------------------------------------------------------------------------------------


async def _cartsync_event(ws: ClientConnection) -> int:
    for _ in range(100):
        frame = json.loads(await ws.recv())
        if frame.get("type") == "event":
            return time.perf_counter_ns()
        if frame.get("type") == "ping":
            await ws.send('{"type":"pong"}')
    raise RuntimeError("no event among 100 frames")


async def cartsync_runs(
    url: str,
    size: int,
    events: int,
    repeats: int,
    deflate: bool = True,
    cpu: ServerCpu | None = None,
) -> list[Latency]:
    tokens = Tokens()
    customer = f"fan-{uuid.uuid4().hex[:12]}"
    token = tokens.customer(customer)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = url.removeprefix("http://").split(":")
    ws_url = "ws" + url.removeprefix("http") + "/v1/ws"
    async with (
        Http1Client(host, int(port), max_connections=1, timeout_s=WAIT_S) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        sockets = [await _open_socket(stack, ws_url, token, deflate) for _ in range(size)]
        receivers = [lambda ws=ws: _cartsync_event(ws) for ws in sockets]
        sent = 0

        async def trigger() -> None:
            nonlocal sent
            sent += 1
            body = b'{"sku":"fan-%d"}' % sent
            response = await http.post("/v1/cart/lines", body, headers)
            if response.status != 201:
                raise RuntimeError(f"POST answered {response.status}: {response.body[:200]!r}")

        await _one_event(receivers, trigger)  # unmeasured
        return await _measured(receivers, trigger, size, events, repeats, cpu)


async def _measured(
    receivers: list[Receive],
    trigger: Callable[[], Awaitable[None]],
    size: int,
    events: int,
    repeats: int,
    cpu: ServerCpu | None,
) -> list[Latency]:
    runs: list[Latency] = []

    async def one_run() -> int:
        runs.append(Latency.of([await _one_event(receivers, trigger) for _ in range(events)]))
        return events

    for _ in range(repeats):
        await (cpu or ServerCpu(None)).measure(size, one_run)
    return runs


# The Socket.IO peer --------------------------------------------------------------------------


async def socketio_runs(
    url: str,
    size: int,
    events: int,
    repeats: int,
    deflate: bool = True,
    cpu: ServerCpu | None = None,
) -> list[Latency]:
    room = f"fan-{uuid.uuid4().hex[:12]}"
    host, port = url.removeprefix("http://").split(":")
    async with (
        Http1Client(host, int(port), max_connections=1, timeout_s=WAIT_S) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        sockets = [
            await sio.open_socket(stack, sio.ws_url(url), room, deflate) for _ in range(size)
        ]

        def receiver(ws: ClientConnection) -> Receive:
            async def receive() -> int:
                await sio.next_event(ws)
                return time.perf_counter_ns()

            return receive

        receivers = [receiver(ws) for ws in sockets]
        sent = 0

        async def trigger() -> None:
            nonlocal sent
            sent += 1
            body = b'{"sku":"fan-%d"}' % sent
            headers = {"Content-Type": "application/json"}
            response = await http.post(f"/rooms/{room}/events", body, headers)
            if response.status != 201:
                raise RuntimeError(f"peer answered {response.status}: {response.body[:200]!r}")

        await _one_event(receivers, trigger)  # unmeasured
        return await _measured(receivers, trigger, size, events, repeats, cpu)


# What compression saves -----------------------------------------------------------------------

SNAPSHOT_LINES = 200
"""The largest cart (the line cap) whose snapshot frame is compressed."""


async def snapshot_sizes(url: str) -> dict[str, int]:
    """Bytes of one 200-line snapshot frame as sent without compression, and as the deflate
    settings of CARTSYNC_WS_COMPRESSION=on (and wsproto's defaults) compress that message."""
    tokens = Tokens()
    token = tokens.customer(f"snap-{uuid.uuid4().hex[:12]}")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = url.removeprefix("http://").split(":")
    ws_url = "ws" + url.removeprefix("http") + "/v1/ws"
    async with (
        Http1Client(host, int(port), max_connections=1, timeout_s=WAIT_S) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        for i in range(SNAPSHOT_LINES):
            body = json.dumps(
                {"sku": f"SKU-{i:06d}", "qty": 1 + i % 3, "attrs": {"size": "M", "colour": "navy"}}
            ).encode()
            response = await http.post("/v1/cart/lines", body, headers)
            if response.status != 201:
                raise RuntimeError(f"POST answered {response.status}: {response.body[:200]!r}")
        protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
        ws = await stack.enter_async_context(
            connect(ws_url, subprotocols=protocols, proxy=None, compression=None)
        )
        await ws.send('{"type":"sync"}')  # no since: a snapshot, not the 200 events
        snapshot = b""
        for _ in range(100):
            frame = await asyncio.wait_for(ws.recv(decode=False), WAIT_S)
            if json.loads(frame).get("type") == "snapshot":
                snapshot = frame
                break
    if not snapshot:
        raise RuntimeError("no snapshot among 100 frames")
    return {
        "plain": len(snapshot),
        "on (11-bit window, memLevel 4)": _deflated(snapshot, WINDOW_BITS, MEM_LEVEL),
        "wsproto default (15-bit window, memLevel 8)": _deflated(snapshot, 15, 8),
    }


def _deflated(message: bytes, window_bits: int, mem_level: int) -> int:
    """Payload bytes of ``message`` under permessage-deflate (RFC 7692 7.2.1: a sync flush,
    its 4-byte tail left off), with a fresh compressor as no context takeover gives."""
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, mem_level
    )
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return len(data) - 4


# The whole measurement -----------------------------------------------------------------------

VARIANTS: tuple[tuple[str, str], ...] = (
    ("cartsync", "deflate offered"),
    ("cartsync", "no deflate"),
    ("cartsync, compression on", "deflate offered"),
    ("socket.io", "deflate offered"),
    ("socket.io", "no deflate"),
)
"""Each server and the way its clients open (see ``bench.harness.OFFERS``)."""

Key = tuple[str, str, int]
"""(path, how the clients open, sockets)."""


def run(plan_name: str = "full") -> Report:
    plan = PLANS[plan_name]
    fds = raise_fd_limit()  # before the servers start: they inherit it
    cores = Cores.detect()
    results: dict[Key, list[Latency]] = {}
    cpus: dict[Key, ServerCpu] = {}
    peer_missing = sio.available()
    sizes: dict[str, int] = {}
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        urls: dict[str, str] = {}
        pids: dict[str, int | None] = {}
        for kind, on in (("cartsync", "off"), ("cartsync, compression on", "on")):
            env = service_env(
                server.url,
                Path(tmp) / kind.replace(", ", "-").replace(" ", "-"),
                CARTSYNC_WS_MAX_PER_OWNER="2000",
                CARTSYNC_WS_COMPRESSION=on,
            )
            started = procs.service(kind, env)
            urls[kind] = started.url
            pids[kind] = started.proc.pid if started.proc is not None else None
        if peer_missing is None:
            peer = sio.start(procs, server.url, "socket.io peer")
            urls["socket.io"] = peer.url
            pids["socket.io"] = peer.proc.pid if peer.proc is not None else None
        pinned = [*procs.notes, cores.pin_self()]

        async def measure() -> None:
            for size in plan.sizes:
                args = (size, plan.events, plan.repeats)
                results["floor", "", size] = await floor_runs(server.url, *args)
                for kind, how in VARIANTS:
                    if kind not in urls:
                        continue
                    measure_one = socketio_runs if kind == "socket.io" else cartsync_runs
                    cpu = cpus[kind, how, size] = ServerCpu(pids.get(kind))
                    results[kind, how, size] = await measure_one(
                        urls[kind], *args, OFFERS[how], cpu
                    )
            sizes.update(await snapshot_sizes(urls["cartsync"]))

        asyncio.run(measure())
    return _report(plan, pinned, results, fds, peer_missing, sizes, cpus)


LABELS = {
    "floor": "Redis PUBLISH → N redis.asyncio subscribers (floor)",
    "cartsync": "cartsync POST → event on N websockets",
    "cartsync, compression on": "cartsync (CARTSYNC_WS_COMPRESSION=on) POST → event on N",
    "socket.io": "Socket.IO + redis-adapter: POST → emit to a room of N",
}


def _report(
    plan: Plan,
    pinned: list[str],
    results: dict[Key, list[Latency]],
    fds: int,
    peer_missing: str | None,
    sizes: dict[str, int],
    cpus: dict[Key, ServerCpu],
) -> Report:
    headers = ["sockets", "path", "client", "runs x events", "p50 ms (to last socket)", "max ms"]
    rows: list[list[str]] = []
    summaries: list[str] = []
    for size in plan.sizes:
        floor = results["floor", "", size]
        f50 = Spread.of([r.p50_ms for r in floor]).median
        fmax = Spread.of([r.max_ms for r in floor]).median
        for (kind, how, n), runs in results.items():
            if n != size:
                continue
            p50 = Spread.of([r.p50_ms for r in runs])
            mx = Spread.of([r.max_ms for r in runs])
            cells = [p50.cell(), mx.cell()]
            if kind != "floor":
                cells[0] += f" = **{ratio(p50.median, f50)}**"
                cells[1] += f" = {ratio(mx.median, fmax)}"
                peer = results.get(("socket.io", how, size))
                vs_peer = ""
                if kind.startswith("cartsync") and peer is not None:
                    peer50 = Spread.of([r.p50_ms for r in peer]).median
                    vs_peer = f", {ratio(p50.median, peer50)} the Socket.IO peer's {peer50:.2f} ms"
                cpu = cpus.get((kind, how, size))
                per_socket = ""
                pooled = cpu.pooled_us() if cpu is not None else None
                if pooled is not None:
                    per_socket = f"; server CPU {pooled:.1f} µs per socket per event (all runs)"
                summaries.append(
                    f"{size} sockets, {kind}, {how}: last socket after {p50.median:.2f} ms "
                    f"(median event) = {ratio(p50.median, f50)} the floor's {f50:.2f} ms{vs_peer}"
                    f"{per_socket}"
                )
            rows.append([str(size), LABELS[kind], how or "-", f"{len(runs)} x {runs[0].n}", *cells])
    plain = sizes.get("plain", 0)
    saved = [
        f"{name}: {n:,} B ({1 - n / plain:.0%} saved)"
        for name, n in sizes.items()
        if name != "plain"
    ]
    notes = [
        f"{plan.events} events per run, {plan.repeats} runs per size; one owner (cartsync "
        "started with CARTSYNC_WS_MAX_PER_OWNER=2000) or one room; each time is from just "
        "before the request (or PUBLISH) until the last of N sockets was handed the frame; "
        "cells: median run (lowest-highest run); p50 is over the events of a run",
        "client: the `websockets` library offering permessage-deflate (as browsers do) or not; "
        "cartsync declines it unless CARTSYNC_WS_COMPRESSION=on, then compresses each frame "
        "once per socket (11-bit window, memLevel 4, no context takeover)",
        "floor: N separate redis.asyncio connections, each SUBSCRIBEd (Redis does the fan-out "
        "in C; the load generator reads N messages, as it reads N frames from the servers)",
        "server CPU: user + system time of the server process (/proc/<pid>/stat, 10 ms ticks) "
        "over the measured events only, POST included, divided by events x sockets; the "
        "figure to follow once a server keeps up with the load generator's own floor",
        f"open-file limit of the load generator and servers: {fds}",
        *(f"pinned: {line}" for line in pinned),
        *(
            [f"Socket.IO peer left out: {peer_missing}"]
            if peer_missing
            else ["Socket.IO peer: one node process (bench/peers/socketio), same Redis"]
        ),
        f"a {SNAPSHOT_LINES}-line snapshot frame: {plain:,} B uncompressed; deflated with "
        + "; ".join(saved)
        + " (the message's payload bytes, compressed by zlib with each setting, as a fresh "
        "compressor per message: no context takeover)",
        *summaries,
    ]
    data = {
        "plan": vars(plan) | {"sizes": list(plan.sizes)},
        "pinned": pinned,
        "snapshot_bytes": sizes,
        "server_cpu_us_per_socket_event": [
            {
                "path": kind,
                "client": how,
                "sockets": size,
                "runs": cpu.us_per_socket_event,
                "all_runs": cpu.pooled_us(),
            }
            for (kind, how, size), cpu in cpus.items()
        ],
        "series": [
            {"path": kind, "client": how, "sockets": size, "runs": [vars(r) for r in runs]}
            for (kind, how, size), runs in results.items()
        ],
    }
    title = "Fan-out: one event to 100 and 1,000 sockets on one instance"
    return Report(NAME, title, headers, rows, notes, data)
