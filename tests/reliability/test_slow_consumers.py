"""Sockets that stop reading are closed (1013) soon after their queue bound, and cost no one else.

50 sockets of two customers sync and then stop reading at the TCP level (their transport stops
reading the socket, whose small receive buffer and segment size keep the kernels' share small),
while each customer's cart changes 100 times a second over REST. With
``CARTSYNC_WS_SEND_QUEUE=64`` each must be closed by the server within 5 s of passing that
bound: seen from outside as the sockets gauge dropping and the customer's per-owner count
freeing (a new socket is accepted again). Meanwhile a normally reading socket of each customer
gets every revision in order, and the server's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import Tokens
from tests.reliability.conftest import (
    CLOSE_WITHIN_S,
    CONNECTIONS,
    MAX_FRAMES,
    SOAK,
    bearer,
    dial,
    ending,
    gaps_and_repeats,
    next_frame,
    rss_mb,
    running,
    scrape,
    watch,
)
from tests.support.processes import RedisProcess, ServiceProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CUSTOMERS = 2
SLOW_PER_CUSTOMER = 25
QUEUE = 64
RATE = 100
"""Changes per second, per customer."""
RUN_S = 90.0 if SOAK else 25.0
"""Longest the changes go on waiting for every slow socket to be closed."""
MORE_S = 30.0 if SOAK else 3.0
"""Changes go on this long after the last slow socket closed (readers must keep up)."""
RSS_GROWTH_MB = 48.0
"""Queues, transport buffers and compressors of 50 stalled sockets stay well below this."""
LIMIT = SLOW_PER_CUSTOMER + 1
"""Per-owner limit: the slow sockets plus one reader fill it exactly."""


def stalled_socket(port: int) -> socket.socket:
    """A connected client socket whose unread data backs up to the server quickly: a small
    receive buffer, and a small segment size announced in the SYN (loopback's 64 KiB segments
    would let the server's send buffer grow to megabytes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@dataclass
class Customer:
    name: str
    token: str
    acked_at: dict[int, float] = field(default_factory=dict)
    """When REST acknowledged each revision."""
    last_rev: int = 0


@dataclass
class Slow:
    customer: Customer
    ws: ClientConnection
    snapshot_rev: int
    revs: list[int] = field(default_factory=list)
    code: int | None = None
    reason: str = ""


async def open_slow(svc: ServiceProcess, customer: Customer) -> Slow:
    ws = await dial(
        svc, subprotocols=bearer(customer.token), sock=stalled_socket(svc.port), max_queue=1
    )
    hello = await next_frame(ws)
    assert hello["type"] == "hello", hello
    await ws.send('{"type": "sync"}')
    snap = await next_frame(ws)
    assert snap["type"] == "snapshot", snap
    ws.transport.pause_reading()  # from now on nothing is read from the TCP socket
    return Slow(customer, ws, snap["rev"])


async def drain_slow(slow: Slow, within_s: float) -> None:
    """Read what the server had sent before it closed, and the close."""
    slow.ws.transport.resume_reading()
    try:
        async with asyncio.timeout(within_s):
            for _ in range(MAX_FRAMES):
                frame = await next_frame(slow.ws, wait_s=within_s)
                if frame["type"] == "event":
                    slow.revs.append(frame["event"]["rev"])
    except ConnectionClosed as closed:
        slow.code = closed.rcvd.code if closed.rcvd else 1006
        slow.reason = closed.rcvd.reason if closed.rcvd else ""
    except TimeoutError:
        slow.code = None


async def write(svc: ServiceProcess, customer: Customer, stop: asyncio.Event) -> None:
    """Change the customer's note RATE times a second (~1 KB events) until told to stop."""
    headers = {"Authorization": f"Bearer {customer.token}"}
    async with httpx.AsyncClient(base_url=svc.url, headers=headers, timeout=10) as http:
        start = time.monotonic()
        for n in range(int(RATE * (RUN_S + MORE_S + 10))):
            if stop.is_set():
                return
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            note = base64.b64encode(os.urandom(750)).decode()  # 1,000 characters, incompressible
            r = await http.put("/v1/cart/note", json={"note": note})
            assert r.status_code == 200, r.text
            customer.last_rev = r.json()["rev"]
            customer.acked_at[customer.last_rev] = time.monotonic()


async def read_all(
    ws: ClientConnection, customer: Customer, revs: list[int], stop: asyncio.Event
) -> None:
    """A normal reader: every event's revision, until the writing stopped and the last
    written revision arrived."""
    for _ in range(MAX_FRAMES):
        try:
            frame = await next_frame(ws, wait_s=0.5)
        except TimeoutError:
            if stop.is_set() and revs and revs[-1] >= customer.last_rev:
                return
            continue
        if frame["type"] == "event":
            revs.append(frame["event"]["rev"])


async def accepted(svc: ServiceProcess, token: str) -> str:
    """'hello' if a new socket of this owner is accepted, else how it was closed."""
    async with dial(svc, subprotocols=bearer(token)) as ws:
        try:
            frame = await next_frame(ws, wait_s=CLOSE_WITHIN_S)
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else 1006}"
        return str(frame["type"])


async def test_sockets_that_stop_reading_are_closed_and_cost_no_one_else(
    own_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    run = uuid.uuid4().hex[:8]
    customers = [
        Customer(f"slow-{run}-{n}", tokens.token("customer", f"slow-{run}-{n}"))
        for n in range(CUSTOMERS)
    ]
    settings = {"CARTSYNC_WS_SEND_QUEUE": str(QUEUE), "CARTSYNC_WS_MAX_PER_OWNER": str(LIMIT)}
    with running(own_redis.url, tmp_path / "service", **settings) as svc:
        async with contextlib.AsyncExitStack() as stack:
            obs = await stack.enter_async_context(watch(svc))
            readers: list[tuple[Customer, ClientConnection, list[int]]] = []
            for c in customers:
                ws = await stack.enter_async_context(dial(svc, subprotocols=bearer(c.token)))
                assert (await next_frame(ws))["type"] == "hello"
                await ws.send('{"type": "sync", "since": 0}')
                readers.append((c, ws, []))
            await asyncio.sleep(0.5)
            rss_before = rss_mb(svc)
            slows = [await open_slow(svc, c) for c in customers for _ in range(SLOW_PER_CUSTOMER)]
            for slow in slows:
                stack.push_async_callback(slow.ws.close)
            full = (await scrape(svc, obs))[CONNECTIONS]
            assert full == len(slows) + len(readers), full
            # The per-owner limit is full now: a further socket is refused.
            refused = [await accepted(svc, c.token) for c in customers]
            assert refused == ["closed 1008"] * CUSTOMERS, refused

            stop = asyncio.Event()
            started = time.monotonic()
            writers = [asyncio.create_task(write(svc, c, stop)) for c in customers]
            reading = [asyncio.create_task(read_all(ws, c, revs, stop)) for c, ws, revs in readers]

            # Watch the server: the gauge over time, and the process's memory.
            samples: list[tuple[float, float]] = []
            rss_peak = rss_before
            all_closed_at = None
            for _ in range(int((RUN_S + MORE_S) / 0.1) + 1):
                now = time.monotonic()
                samples.append((now, (await scrape(svc, obs))[CONNECTIONS]))
                rss_peak = max(rss_peak, rss_mb(svc))
                if all_closed_at is None and samples[-1][1] <= len(readers):
                    all_closed_at = now
                if now - started > RUN_S and all_closed_at is None:
                    break
                if all_closed_at is not None and now - all_closed_at > MORE_S:
                    break
                if any(w.done() for w in writers):
                    break
                await asyncio.sleep(0.1)
            stop.set()
            for w in writers:
                await w  # a failed REST change fails the test here
            wrote_s = time.monotonic() - started
            freed = [await accepted(svc, c.token) for c in customers]

            # Let the slow sockets read now: what they got before the close, and the close.
            await asyncio.gather(*(drain_slow(s, 15.0) for s in slows))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await asyncio.gather(*reading)
            reader_end = [await ending(ws, 0.2) for _, ws, _ in readers]

    # When did each slow socket pass its bound? Its last delivered revision, plus a full queue.
    late: list[str] = []
    deadlines: list[float] = []
    for slow in slows:
        last = slow.revs[-1] if slow.revs else slow.snapshot_rev
        bound_rev = last + QUEUE + 1
        at = slow.customer.acked_at.get(bound_rev)
        if at is None:
            late.append(f"{slow.customer.name}: bound revision {bound_rev} never written")
            continue
        deadlines.append(at + CLOSE_WITHIN_S)
    deadlines.sort()
    for k, deadline in enumerate(deadlines, start=1):
        # The k-th deadline passed: by then the gauge must have dropped by k.
        by_then = [g for t, g in samples if t <= deadline]
        if not by_then or min(by_then) > full - k:
            seen = by_then[-1] if by_then else full
            late.append(
                f"by {deadline - started:.1f} s at least {k} slow sockets should be closed "
                f"server-side; the gauge was {seen:.0f} of {full:.0f}"
            )
            break

    closes = sorted({f"{s.code} {s.reason!r}" for s in slows})
    order = [
        f"{s.customer.name}: {problem}"
        for s in slows
        if (problem := gaps_and_repeats(s.revs, s.snapshot_rev + 1, s.snapshot_rev + len(s.revs)))
    ]
    lost = [
        f"{c.name}: {problem}"
        for c, _, revs in readers
        if (problem := gaps_and_repeats(revs, 1, c.last_rev))
    ]
    closed_at = f"{all_closed_at - started:.1f} s" if all_closed_at else "never"
    print(
        f"\nslow consumers: {len(slows)} stalled sockets, {CUSTOMERS} customers at {RATE}/s "
        f"each for {wrote_s:.1f} s (revs {[c.last_rev for c in customers]}); all closed "
        f"server-side after {closed_at}; gauge {full:.0f} -> {samples[-1][1]:.0f}; closes "
        f"{closes}; delivered before the close {min(len(s.revs) for s in slows)}-"
        f"{max(len(s.revs) for s in slows)} events; RSS {rss_before:.1f} -> peak "
        f"{rss_peak:.1f} MB (+{rss_peak - rss_before:.1f}); readers lost "
        f"{len(lost)}; new socket after: {freed}"
    )
    assert not late, "; ".join(late[:5])
    assert all(s.code == 1013 and s.reason for s in slows), f"slow sockets ended: {closes}"
    assert not order, order[:5]
    assert freed == ["hello"] * CUSTOMERS, f"per-owner count not freed: {freed}"
    assert not lost, lost
    assert all(e.code is None for e in reader_end), f"readers were closed: {reader_end}"
    assert rss_peak - rss_before <= RSS_GROWTH_MB, f"RSS grew {rss_peak - rss_before:.1f} MB"
