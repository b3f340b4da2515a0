"""Event frames built once per event and written straight to each socket's connection
(``hypercorn_hooks.FramingStream``) are frames a strict client accepts, come in order among
the other frames a session sends, and leave the usual path to sockets that negotiated
permessage-deflate; a socket that goes away in the middle of a fan-out costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from wsproto.frame_protocol import FrameProtocol

from cartsync.web.hypercorn_hooks import text_frame
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess
from tests.test_live import IO_TIMEOUT_S, MAX_FRAMES, Frame, Live, add_lines, live, rest, running

pytestmark = pytest.mark.slow

SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)
"""Around each of the three length encodings' edges."""


@pytest.mark.parametrize("size", SIZES)
def test_a_text_frame_is_what_wsproto_builds_and_a_client_reads_it_back(size: int) -> None:
    payload = ("é" * (size // 2) + "a" * (size % 2)).encode()  # two bytes a character
    assert len(payload) == size
    built = text_frame(payload)
    assert built == FrameProtocol(client=False, extensions=[]).send_data(payload.decode(), True)
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(built)
    frames = list(reader.received_frames())
    assert len(frames) == 1
    assert (frames[0].payload, frames[0].frame_finished) == (payload.decode(), True)


def _direct(service: ServiceProcess) -> float:
    text = httpx.get(service.metrics_url, timeout=IO_TIMEOUT_S).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cartsync_event_frames_direct_total":
                return sample.value
    raise AssertionError("no cartsync_event_frames_direct_total in /metrics")


@pytest.fixture(scope="module")
def compressing(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with running(
        redis_server.url,
        tmp_path_factory.mktemp("frames-deflate"),
        CARTSYNC_WS_COMPRESSION="on",
        CARTSYNC_WS_MAX_PER_OWNER="40",
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def plain(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with running(
        redis_server.url, tmp_path_factory.mktemp("frames-plain"), CARTSYNC_WS_MAX_PER_OWNER="40"
    ) as svc:
        yield svc


EVENTS = 25


@pytest.mark.parametrize(
    ("which", "offer", "direct"),
    [
        ("plain", True, True),  # offered and declined: nothing negotiated
        ("plain", False, True),
        ("compressing", True, False),  # deflate negotiated: each socket compresses its copy
        ("compressing", False, True),
    ],
)
async def test_events_reach_strict_clients_whole_and_in_order_with_and_without_deflate(
    which: str,
    offer: bool,
    direct: bool,
    request: pytest.FixtureRequest,
    tokens: Tokens,
    customer_id: str,
) -> None:
    service: ServiceProcess = request.getfixturevalue(which)
    token = tokens.token("customer", customer_id)
    compression = "deflate" if offer else None
    async with contextlib.AsyncExitStack() as stack:
        socks = [
            await stack.enter_async_context(live(service, token, compression=compression))
            for _ in range(3)
        ]
        for sock in socks:
            await sock.sync(0)
        async with rest(service, token) as http:
            await add_lines(http, ["warm-up"])  # each socket has caught up and follows live
            for sock in socks:
                assert [e["rev"] for e in await sock.events(1)] == [1]
            before = _direct(service)
            await add_lines(http, [f"SKU-{n}" for n in range(EVENTS)])
        for sock in socks:
            events = await sock.events(EVENTS)
            assert [e["rev"] for e in events] == list(range(2, EVENTS + 2))
            assert [e["data"]["line"]["sku"] for e in events] == [f"SKU-{n}" for n in range(EVENTS)]
            await sock.quiet()
    written = _direct(service) - before
    if direct:
        # Most go straight; one may meet a socket whose last write the peer had not yet taken.
        assert written >= len(socks) * EVENTS * 0.8, written
    else:
        assert written == 0


async def _pinging(sock: Live, count: int) -> list[Frame]:
    """Send ``count`` pings and device renames while reading; every frame read until the
    ``count``-th pong, after which events are still read until the last revision comes."""
    frames: list[Frame] = []
    pongs = 0
    for n in range(count):
        await sock.send({"type": "ping"})
        if n % 5 == 0:
            await sock.send({"type": "device", "label": f"phone {n}", "kind": "phone"})
        await asyncio.sleep(0.002)
    while pongs < count and len(frames) < MAX_FRAMES:
        frame = await sock.frame()
        frames.append(frame)
        pongs += frame["type"] == "pong"
    return frames


async def test_events_keep_their_order_among_pongs_and_presence_frames(
    plain: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        live(plain, token, compression=None) as a,
        live(plain, token) as b,
        rest(plain, token) as http,
    ):
        for sock in (a, b):
            await sock.sync(0)
        pings = 60
        writing = asyncio.create_task(add_lines(http, [f"SKU-{n}" for n in range(40)]))
        seen = await asyncio.gather(_pinging(a, pings), _pinging(b, pings))
        revs_written = await writing
        for frames, sock in zip(seen, (a, b), strict=True):
            assert sum(f["type"] == "pong" for f in frames) == pings
            assert any(f["type"] == "presence" for f in frames)
            revs = [f["event"]["rev"] for f in frames if f["type"] == "event"]
            while not revs or revs[-1] < revs_written[-1]:
                frame = await sock.frame()
                if frame["type"] == "event":
                    revs.append(frame["event"]["rev"])
            assert revs == revs_written
            assert {f["type"] for f in frames} <= {"pong", "presence", "event"}


async def test_sockets_that_vanish_mid_fan_out_cost_the_others_nothing(
    plain: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    gone = 18
    async with contextlib.AsyncExitStack() as stack:
        socks = [
            await stack.enter_async_context(live(plain, token, compression=None))
            for _ in range(gone + 2)
        ]
        for sock in socks:
            await sock.sync(0)
        async with rest(plain, token) as http:
            await add_lines(http, ["warm-up"])
            for sock in socks:
                await sock.events(1)
            writing = asyncio.create_task(add_lines(http, [f"SKU-{n}" for n in range(60)]))
            await asyncio.sleep(0.05)
            for sock in socks[:gone]:
                _drop(sock.ws)  # a reset, as a phone that lost its network
            revs = await writing
            assert revs == list(range(2, 62))
            for sock in socks[gone:]:
                assert [e["rev"] for e in await sock.events(60)] == revs
            # The process let the vanished sockets go and serves a new one like any other.
            async with live(plain, token) as fresh:
                await fresh.sync(1)
                await add_lines(http, ["after"])
                assert [e["rev"] for e in await fresh.events(61)] == list(range(2, 63))
        for sock in socks[gone:]:
            assert [e["rev"] for e in await sock.events(1)] == [62]
    await _released(plain, customer_id, tokens)


def _drop(ws: ClientConnection) -> None:
    """Close the client's socket with a reset (SO_LINGER 0), unannounced."""
    transport = ws.transport
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _released(service: ServiceProcess, customer_id: str, tokens: Tokens) -> None:
    """Every socket of the customer closed: the per-owner limit (40) has room for 40 again."""
    token = tokens.token("customer", customer_id)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(40):
            for attempt in range(50):
                try:
                    await stack.enter_async_context(live(service, token, compression=None))
                    break
                except (ConnectionClosed, AssertionError):
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)
