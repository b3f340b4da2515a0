"""A live session ends, and gives back what it held, whatever its tasks are doing.

Regression tests for sessions that never ended: one whose pump was inside a Redis call when a
bad frame arrived, and one whose peer stopped reading while the pump waited on the send. A
session that never ends holds its place in the per-owner limit, so the customer's next socket
is refused: these tests check that place comes back, as a customer would notice it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess
from tests.test_live import bearer, close_code, dial, live, next_frame, rest, running
from tests.test_live_faults import small_buffer_socket

pytestmark = pytest.mark.slow

RELEASE_S = 5.0
"""How long a session may take to give back its place after it ended."""


@pytest.fixture(scope="module")
def tight(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Two sockets per customer, so a single leaked session is felt at once."""
    with running(
        redis_server.url,
        tmp_path_factory.mktemp("tight"),
        CARTSYNC_WS_MAX_PER_OWNER="2",
        CARTSYNC_WS_PING_INTERVAL_SECONDS="0.5",
    ) as svc:
        yield svc


async def open_sockets(service: ServiceProcess) -> float:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        text = (await http.get(service.metrics_url)).text
    found = re.search(r"^cartsync_websocket_connections (\S+)$", text, re.M)
    assert found is not None, "the connections gauge is missing from /metrics"
    return float(found.group(1))


async def settled(service: ServiceProcess, expected: float) -> float:
    """The connections gauge once it reaches ``expected``, or what it shows after the bound."""
    value = await open_sockets(service)
    for _ in range(int(RELEASE_S / 0.1)):
        if value == expected:
            break
        await asyncio.sleep(0.1)
        value = await open_sockets(service)
    return value


async def still_welcome(service: ServiceProcess, token: str) -> None:
    """The customer can open both of their sockets: no leaked session holds a place."""
    async with live(service, token) as one, live(service, token) as two:
        await one.sync(0)
        await two.sync(0)


async def test_a_bad_frame_right_after_sync_ends_the_session_and_frees_its_place(
    tight: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(tight, token) as http:
        assert (await http.post("/v1/cart/lines", json={"sku": "A", "qty": 1})).status_code == 201
    baseline = await open_sockets(tight)
    for _ in range(6):  # three times the per-owner limit: each would leak a place before
        async with dial(tight, subprotocols=bearer(token)) as ws:
            assert (await next_frame(ws))["type"] == "hello"
            # Back to back: the pump is reading the log for the sync when the garbage lands.
            await ws.send('{"type":"sync"}')
            await ws.send("{not json")
            assert await close_code(ws, wait_s=RELEASE_S) == 1007
    assert await settled(tight, baseline) == baseline
    await still_welcome(tight, token)


async def test_invalid_utf8_in_a_text_frame_is_closed_with_1007(
    tight: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    for authenticated in (False, True):
        protocols = bearer(token) if authenticated else None
        async with dial(tight, subprotocols=protocols) as ws:
            if authenticated:
                assert (await next_frame(ws))["type"] == "hello"
            await ws.send(b'{"type":"sync","x":"\xff\xfe"}', text=True)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(RELEASE_S):
                    await ws.recv()
            received = closed.value.rcvd
            assert received is not None, "TCP dropped without a close frame (1006)"
            assert received.code == 1007
            assert received.reason
    await still_welcome(tight, token)


@pytest.mark.parametrize("where", ["first frame", "after auth", "op body"])
async def test_deep_nesting_is_closed_with_1008_not_1011(
    tight: ServiceProcess, tokens: Tokens, customer_id: str, where: str
) -> None:
    token = tokens.token("customer", customer_id)
    deep = "[" * 1000 + "]" * 1000
    frame = {
        "first frame": deep,
        "after auth": deep,
        "op body": '{"type":"op","id":"op-1","name":"add_line","body":' + deep + "}",
    }[where]
    protocols = None if where == "first frame" else bearer(token)
    async with dial(tight, subprotocols=protocols) as ws:
        if protocols is not None:
            assert (await next_frame(ws))["type"] == "hello"
        await ws.send(frame)
        # The frame itself is refused (even the op's, whose body is parsed with the frame).
        assert await close_code(ws, wait_s=RELEASE_S) == 1008
    await still_welcome(tight, token)


STALLS = {
    # Which bound ends a socket that stopped reading, the settings that make it the only one,
    # and the close code the client finds once it reads again.
    "queue overflow": (
        {
            "CARTSYNC_WS_SEND_QUEUE": "16",
            "CARTSYNC_WS_SEND_TIMEOUT_SECONDS": "60",
        },
        1013,
    ),
    "silence": (
        {
            "CARTSYNC_WS_PING_INTERVAL_SECONDS": "0.5",
            "CARTSYNC_WS_SEND_QUEUE": "100000",
            "CARTSYNC_WS_SEND_QUEUE_BYTES": "1000000000",
            "CARTSYNC_WS_SEND_TIMEOUT_SECONDS": "60",
        },
        1001,
    ),
    "send timeout": (
        {
            "CARTSYNC_WS_PING_INTERVAL_SECONDS": "60",
            "CARTSYNC_WS_SEND_QUEUE": "100000",
            "CARTSYNC_WS_SEND_QUEUE_BYTES": "1000000000",
            "CARTSYNC_WS_SEND_TIMEOUT_SECONDS": "1",
        },
        1013,
    ),
}
CHANGES = 400


@pytest.mark.parametrize("bound", list(STALLS))
async def test_a_socket_that_stops_reading_is_released_by_each_bound(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens, customer_id: str, bound: str
) -> None:
    settings, code = STALLS[bound]
    token = tokens.token("customer", customer_id)
    with running(redis_server.url, tmp_path, CARTSYNC_WS_MAX_PER_OWNER="2", **settings) as svc:
        baseline = await open_sockets(svc)
        sock = small_buffer_socket(svc.port)
        async with (
            live(svc, token, sock=sock, compression=None, max_queue=1) as slow,
            rest(svc, token) as http,
        ):
            await slow.sync(0)
            slow.ws.transport.pause_reading()
            # Enough ~1 KB events to fill the network buffers and then a 16-event queue.
            for n in range(CHANGES):
                r = await http.put("/v1/cart/note", json={"note": f"{n:04d} " + "x" * 995})
                assert r.status_code == 200, r.text
            # The server ended the stalled session without the client reading a byte...
            assert await settled(svc, baseline) == baseline
            # ...so both of the customer's places are free while it still holds its TCP socket.
            async with live(svc, token) as one, live(svc, token) as two:
                await one.sync()
                await two.sync()
                for sock_ in (one, two):
                    snap = await sock_.frame()
                    assert snap["type"] == "snapshot", snap
                    assert snap["rev"] == CHANGES
            slow.ws.transport.resume_reading()
            assert await close_code(slow.ws, wait_s=30) == code


async def frames_then_close(ws: object, wait_s: float = RELEASE_S) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason (None: no close frame)."""
    try:
        async with asyncio.timeout(wait_s):
            for _ in range(10_000):
                await ws.recv()  # type: ignore[attr-defined]
    except ConnectionClosed as closed:
        received = closed.rcvd
        return (received.code, received.reason) if received is not None else (None, "")
    raise AssertionError("the server never closed the socket")


async def test_a_close_with_the_clients_frames_still_in_flight_ends_tcp_cleanly(
    tight: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    baseline = await open_sockets(tight)
    for _ in range(5):
        async with dial(tight, subprotocols=bearer(token)) as ws:
            assert (await next_frame(ws))["type"] == "hello"
            # A refused frame, and pings the client had already sent before the close came.
            await ws.send('{"type":"nope"}')
            for _ in range(200):
                await ws.send('{"type":"ping"}')
            code, reason = await frames_then_close(ws)
            assert code == 1008, "the close frame was lost (a reset, 1006)"
            assert reason
            async with asyncio.timeout(RELEASE_S):
                await ws.wait_closed()  # the server ends TCP too
    assert await settled(tight, baseline) == baseline
    await still_welcome(tight, token)


async def test_an_oversize_message_closes_1009_with_a_reason_and_frees_the_session(
    tight: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    baseline = await open_sockets(tight)
    for _ in range(3):
        async with dial(tight, subprotocols=bearer(token)) as ws:
            assert (await next_frame(ws))["type"] == "hello"
            await ws.send('{"type":"sync"}')
            await ws.send(b"\x00" * 70_000)
            for _ in range(33):
                await ws.send('{"type":"ping"}')
            code, reason = await frames_then_close(ws)
            assert code == 1009
            assert "64 KiB" in reason
    assert await settled(tight, baseline) == baseline
    await still_welcome(tight, token)


async def test_revoking_a_grant_closes_a_staff_socket_that_never_synced(
    tight: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    from tests.test_consent import claim, handoff

    me = tokens.headers("customer", customer_id)
    staff_token = tokens.token("staff", "emp-5", store="s-1")
    async with httpx.AsyncClient(base_url=tight.url, timeout=10) as http:
        grant = await claim(
            http, await handoff(http, me), {"Authorization": f"Bearer {staff_token}"}
        )
        protocols = [*bearer(staff_token), f"grant.{grant['id']}"]
        async with dial(tight, subprotocols=protocols) as ws:
            assert (await next_frame(ws))["type"] == "hello"
            r = await http.delete(f"/v1/grants/{grant['id']}", headers=me)
            assert r.status_code == 200
            assert await close_code(ws, wait_s=RELEASE_S) == 4403
