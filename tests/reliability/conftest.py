"""Shared pieces of the hostile-conditions battery: private processes, sockets, observations.

Every test here starts its own redis-server and cartsync processes on loopback and observes
them from outside, the way an operator would: ``/metrics``, ``/proc/<pid>``, ``CLIENT LIST``.
``CARTSYNC_SOAK=1`` switches each test to its long form.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.support.processes import RedisProcess, ServiceProcess, service_env

SOAK = os.environ.get("CARTSYNC_SOAK") == "1"
"""The long forms of the battery (``make soak``)."""

OPEN_TIMEOUT_S = 10.0
"""Longest wait for a handshake and its ``hello``."""
CLOSE_WITHIN_S = 5.0
"""A socket the server must close is closed within this; longer counts as a hang."""
SETTLE_S = 10.0
"""Longest wait for gauges and counts to come back to their baseline."""
MAX_FRAMES = 100_000
"""No read loop takes more frames than this."""

CONNECTIONS = "cartsync_websocket_connections"
TASKS = "cartsync_asyncio_tasks"
CHANNELS = "cartsync_pubsub_channels"

Frame = dict[str, Any]


@pytest.fixture(scope="session", autouse=True)
def _many_descriptors() -> None:
    """Thousands of sockets: raise this process's descriptor limit (services inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65_536 if hard == resource.RLIM_INFINITY else min(65_536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# Processes --------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own, so CLIENT LIST counts only this test's service."""
    server = RedisProcess(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running(redis_url: str, data_dir: Path, **overrides: str) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(redis_url, data_dir, **overrides)).start()
    try:
        yield proc
    finally:
        proc.stop()


def pid_of(service: ServiceProcess) -> int:
    assert service.proc is not None, "the service is not running"
    return service.proc.pid


def rss_mb(service: ServiceProcess) -> float:
    """The service process's resident set (VmRSS), in MB."""
    for line in Path(f"/proc/{pid_of(service)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def open_fds(service: ServiceProcess) -> int:
    return len(os.listdir(f"/proc/{pid_of(service)}/fd"))


def fds_to_port(service: ServiceProcess, port: int) -> int:
    """The service's descriptors that are TCP connections to ``port`` (e.g. Redis's): a
    connection pool grows with concurrency, which is not a session left behind."""
    pid = pid_of(service)
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            if int(cols[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                count += 1
    return count


def redis_clients(server: RedisProcess) -> int:
    """Clients connected to ``server``, not counting the connection that asks."""
    with server.client() as r:
        return len(r.client_list()) - 1


async def scrape(
    service: ServiceProcess, http: httpx.AsyncClient | None = None
) -> dict[str, float]:
    """Every unlabelled sample of the service's /metrics, by name.

    Pass a long-lived ``http`` client (see ``watch``) when counting tasks or descriptors: a
    fresh connection per scrape lingers in the server for seconds after it closed (3 tasks and
    a descriptor each, until Hypercorn's keep-alive timeout) and would be counted.
    """
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=service.url, timeout=OPEN_TIMEOUT_S)
            )
        r = await http.get(service.metrics_url)
    assert r.status_code == 200, r.text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if not sample.labels:
                found[sample.name] = sample.value
    return found


@contextlib.asynccontextmanager
async def watch(service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    """One kept-alive HTTP connection for observing a service (the same one at the baseline
    and afterwards, so it cancels out)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=service.url, timeout=OPEN_TIMEOUT_S, limits=limits) as c:
        yield c


@dataclass
class Vitals:
    """What an operator watches on one service process."""

    connections: float
    channels: float
    tasks: float
    fds: int
    rss_mb: float

    def line(self) -> str:
        return (
            f"connections={self.connections:.0f} channels={self.channels:.0f} "
            f"tasks={self.tasks:.0f} fds={self.fds} rss={self.rss_mb:.1f}MB"
        )


async def vitals(service: ServiceProcess, http: httpx.AsyncClient | None = None) -> Vitals:
    m = await scrape(service, http)
    return Vitals(m[CONNECTIONS], m[CHANNELS], m[TASKS], open_fds(service), rss_mb(service))


async def settle(
    probe: Callable[[], Awaitable[bool]], *, within_s: float = SETTLE_S, every_s: float = 0.2
) -> bool:
    """Poll ``probe`` until it holds or the time is up (bounded); whether it held."""
    deadline = time.monotonic() + within_s
    for _ in range(int(within_s / every_s) + 2):
        if await probe():
            return True
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(every_s)
    return await probe()


async def healthy(service: ServiceProcess) -> bool:
    async with httpx.AsyncClient(base_url=service.url, timeout=OPEN_TIMEOUT_S) as http:
        return (await http.get("/healthz")).status_code == 200


# Sockets ----------------------------------------------------------------------------------


def ws_url(service: ServiceProcess) -> str:
    return "ws" + service.url.removeprefix("http") + "/v1/ws"


def bearer(token: str, *extra: str) -> list[Subprotocol]:
    """The subprotocols a browser offers to carry its token."""
    return [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}"), *map(Subprotocol, extra)]


def dial(service: ServiceProcess, **kw: Any) -> connect:
    """A ``websockets`` client connection to /v1/ws, offering permessage-deflate (the default,
    as browsers do), ignoring proxy variables, with bounded open and close."""
    kw.setdefault("open_timeout", OPEN_TIMEOUT_S)
    kw.setdefault("close_timeout", 2)
    kw.setdefault("ping_interval", None)  # the protocol's pings are JSON; see protocol.md
    return connect(ws_url(service), proxy=None, **kw)


async def next_frame(ws: ClientConnection, wait_s: float = OPEN_TIMEOUT_S) -> Frame:
    """The next frame other than a server ping (answered with pong)."""
    for _ in range(MAX_FRAMES):
        raw = await asyncio.wait_for(ws.recv(), wait_s)
        assert isinstance(raw, str), f"server sent a binary frame: {raw!r}"
        frame: Frame = json.loads(raw)
        if frame == {"type": "ping"}:
            await ws.send('{"type":"pong"}')
            continue
        return frame
    raise AssertionError(f"only pings for {MAX_FRAMES} frames")


@dataclass
class Ending:
    """How the server ended a socket: its close code and reason (1006: no close frame), or a
    hang (``code`` None) when nothing ended it in time. ``tcp_open``: the close frames were
    exchanged but the server had not closed the TCP connection by the deadline."""

    code: int | None
    reason: str
    seconds: float
    frames: int
    tcp_open: bool = False

    def __str__(self) -> str:
        if self.code is None:
            return f"hang (no close within {self.seconds:.1f} s)"
        if self.tcp_open:
            return f"{self.code} {self.reason!r}, TCP left open"
        return f"{self.code} {self.reason!r}"


async def ending(ws: ClientConnection, within_s: float = CLOSE_WITHIN_S) -> Ending:
    """Read (and drop) frames until the server closes the socket, for at most ``within_s``."""
    start = time.monotonic()
    frames = 0
    try:
        async with asyncio.timeout(within_s):
            for _ in range(MAX_FRAMES):
                await ws.recv()
                frames += 1
    except ConnectionClosed as closed:
        took = time.monotonic() - start
        if closed.rcvd is None:
            return Ending(1006, "", took, frames)
        return Ending(closed.rcvd.code, closed.rcvd.reason, took, frames)
    except TimeoutError:
        pass
    took = time.monotonic() - start
    # recv() raises only once the TCP connection is gone; a close frame may have come already.
    rcvd = ws.protocol.close_rcvd
    if rcvd is not None:
        return Ending(rcvd.code, rcvd.reason, took, frames, tcp_open=True)
    return Ending(None, "", took, frames)


@contextlib.asynccontextmanager
async def live(service: ServiceProcess, token: str, **kw: Any) -> AsyncIterator[ClientConnection]:
    """A socket authenticated by subprotocol, past its ``hello``."""
    async with dial(service, subprotocols=bearer(token), **kw) as ws:
        hello = await next_frame(ws)
        assert hello["type"] == "hello", hello
        yield ws


async def rev_stream(
    ws: ClientConnection, last: int, within_s: float, seen: list[int] | None = None
) -> list[int]:
    """Revisions of the events (a snapshot counts as its ``rev``) until ``last`` arrives."""
    revs = [] if seen is None else seen
    async with asyncio.timeout(within_s):
        for _ in range(MAX_FRAMES):
            if revs and revs[-1] >= last:
                break
            frame = await next_frame(ws, wait_s=within_s)
            if frame["type"] == "event":
                revs.append(frame["event"]["rev"])
            elif frame["type"] == "snapshot":
                revs.append(frame["rev"])
    return revs


def gaps_and_repeats(revs: list[int], first: int, last: int) -> str:
    """'' when ``revs`` is exactly first..last; otherwise what is wrong with it, briefly."""
    if revs == list(range(first, last + 1)):
        return ""
    missing = sorted(set(range(first, last + 1)) - set(revs))
    repeats = len(revs) - len(set(revs))
    disorder = sum(1 for a, b in itertools.pairwise(revs) if b <= a)
    return (
        f"{len(revs)} revs, missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
        f"{repeats} repeated, {disorder} out of order"
    )
