"""Live sockets under faults: pub/sub connections killed, a client that stops reading, Redis down.

Pub/sub is only a wake-up signal; the event log is the record. Whatever happens between the
service and Redis, a socket ends up with every revision once and in order, or is closed with a
code that tells the client to come back with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env
from tests.test_live import (
    MAX_FRAMES,
    Live,
    add_lines,
    bearer,
    close_code,
    dial,
    live,
    next_frame,
    rest,
    running,
    still_serving,
)

pytestmark = pytest.mark.slow

POLL_S = 0.25
POLL_ROUNDS = 60
"""Bounded waits for recovery: at most 60 polls a quarter of a second apart (15 s)."""
RECOVERY_S = 30.0
"""Longest wait for a socket to catch up after a fault."""


async def revs_until(sock: Live, last: int) -> list[int]:
    """Revisions of the events that arrive until ``last`` does (bounded in count and time)."""
    revs: list[int] = []
    async with asyncio.timeout(RECOVERY_S):
        for _ in range(MAX_FRAMES):
            frame = await next_frame(sock.ws, wait_s=RECOVERY_S)
            assert frame["type"] == "event", frame
            revs.append(frame["event"]["rev"])
            if revs[-1] >= last:
                return revs
    raise AssertionError(f"revision {last} never arrived; got {revs}")


# Pub/sub connection killed ----------------------------------------------------------------


@pytest.fixture
def instances(
    redis_server: RedisProcess, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with (
        running(redis_server.url, tmp_path / "one") as one,
        running(redis_server.url, tmp_path / "two") as two,
    ):
        yield one, two


async def test_killed_pubsub_connections_lose_no_event_and_duplicate_none(
    redis_server: RedisProcess,
    instances: tuple[ServiceProcess, ServiceProcess],
    tokens: Tokens,
    customer_id: str,
) -> None:
    one, two = instances
    token = tokens.token("customer", customer_id)
    admin = redis_server.client()
    killed = 0
    try:
        async with live(two, token) as b, rest(one, token) as a:
            await b.sync(0)
            received: list[int] = []
            for n in range(1, 51):
                r = await a.post("/v1/cart/lines", json={"sku": f"SKU-{n}"})
                assert r.status_code == 201, r.text
                assert r.json()["rev"] == n
                if n % 8 == 0:
                    # Every pub/sub connection to this Redis, both instances' included.
                    killed += int(admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
                if n % 10 == 0:
                    received += await revs_until(b, n)  # read while the faults go on
            assert received == list(range(1, 51))
            await b.quiet()

            # The hub is subscribed again: new changes still arrive live.
            await add_lines(a, ["AFTER"])
            assert await revs_until(b, 51) == [51]
            await b.quiet()
    finally:
        admin.close()
    assert killed >= 6  # the faults really happened (two instances, six kills)


# Slow consumer ----------------------------------------------------------------------------

CHANGES = 500


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket whose unread frames back up to the server after ~200 KB, not ~3 MB.

    Loopback's 64 KiB segments let Linux grow the server's send buffer to megabytes; a small
    maximum segment size (announced in our SYN) and receive buffer keep the kernels' share
    small, so the server's own bounded queue is what fills.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_socket_that_stops_reading_is_closed_with_1013_and_can_resume(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    with running(redis_server.url, tmp_path, CARTSYNC_WS_SEND_QUEUE="8") as svc:
        sock = small_buffer_socket(svc.port)
        async with (
            live(svc, token, sock=sock, compression=None, max_queue=1) as slow,
            live(svc, token) as steady,
            rest(svc, token) as a,
        ):
            await slow.sync(0)
            await steady.sync(0)
            slow.ws.transport.pause_reading()  # the client stops reading its socket

            async def write(start: int) -> None:
                for n in range(start, CHANGES + 1, 4):
                    note = f"{n:04d} " + "x" * 995  # ~1 KB per event
                    r = await a.put("/v1/cart/note", json={"note": note})
                    assert r.status_code == 200, r.text

            # Writers are not held up by the stalled socket.
            await asyncio.gather(*(write(start) for start in range(1, 5)))
            steady_revs = await revs_until(steady, CHANGES)
            assert steady_revs == list(range(1, CHANGES + 1))
            await still_serving(svc, tokens)

            slow.ws.transport.resume_reading()
            got: list[int] = []
            code = None
            try:
                async with asyncio.timeout(RECOVERY_S):
                    for _ in range(CHANGES + 1):
                        frame = await next_frame(slow.ws)
                        assert frame["type"] == "event", frame
                        got.append(frame["event"]["rev"])
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
            assert code == 1013, f"closed with {code} after {len(got)} events"
            assert got == list(range(1, len(got) + 1))  # what did arrive was in order
            assert len(got) < CHANGES

        # Coming back with since gets exactly the rest.
        async with live(svc, token) as again:
            await again.sync(len(got))
            rest_revs = [e["rev"] for e in await again.events(CHANGES - len(got))]
            assert rest_revs == list(range(len(got) + 1, CHANGES + 1))
            await again.quiet()
        assert svc.proc is not None
        assert svc.proc.poll() is None


# Redis stopped ----------------------------------------------------------------------------


@pytest.fixture
def outage_service(private_redis: RedisProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = service_env(
        private_redis.url,
        tmp_path / "service",
        CARTSYNC_REDIS_TIMEOUT_SECONDS="0.5",
        CARTSYNC_HUB_HEARTBEAT_SECONDS="0.5",
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


async def post_until_created(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """Repeat a POST until the store takes it again (bounded)."""
    r = await http.post("/v1/cart/lines", json=body)
    for _ in range(POLL_ROUNDS):
        if r.status_code == 201:
            break
        assert r.status_code == 503, r.text
        await asyncio.sleep(POLL_S)
        r = await http.post("/v1/cart/lines", json=body)
    return r


@contextlib.asynccontextmanager
async def live_when_ready(service: ServiceProcess, token: str) -> AsyncIterator[Live]:
    """A socket past its hello, retrying while the service answers 1013 (hub reconnecting)."""
    for _ in range(POLL_ROUNDS):
        async with dial(service, subprotocols=bearer(token)) as ws:
            try:
                hello = await next_frame(ws, wait_s=RECOVERY_S)
            except ConnectionClosed as closed:
                if closed.rcvd is None or closed.rcvd.code != 1013:
                    raise
            else:
                assert hello["type"] == "hello", hello
                yield Live(ws, hello)
                return
        await asyncio.sleep(POLL_S)
    raise AssertionError("live updates never became available again")


async def frames_for(sock: Live, seconds: float) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame that arrives within ``seconds``, and the close code if the socket closed."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            for _ in range(MAX_FRAMES):
                frames.append(await next_frame(sock.ws, wait_s=seconds))
    except TimeoutError:
        return frames, None
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd is not None else 1006
    return frames, None


async def test_sockets_survive_a_redis_outage_and_resume_afterwards(
    private_redis: RedisProcess, outage_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a, live(outage_service, token) as b:
        await b.sync(0)
        await add_lines(a, ["OLD-1", "OLD-2", "OLD-3"])
        before = await b.events(3)
        assert [e["rev"] for e in before] == [1, 2, 3]

        private_redis.stop()

        # An op while Redis is down is refused, and the socket stays usable.
        await b.op("during-outage", "add_line", {"sku": "NOPE"})
        nack = await b.frame()
        assert (nack["type"], nack["error"]["code"]) == ("nack", "store_unavailable"), nack
        # A new socket cannot get live updates now: told to retry later.
        async with dial(outage_service, subprotocols=bearer(token)) as ws:
            assert await close_code(ws, wait_s=15) == 1013
        frames, code = await frames_for(b, 1.0)
        assert code in (None, 1013), (code, frames)
        assert frames == []

        private_redis.start()  # same port, and empty: no persistence

        r = await post_until_created(a, {"sku": "NEW-1"})
        assert r.status_code == 201, r.text
        assert r.json()["rev"] == 1  # the data started over

        if code is None:
            # The open socket learns that its revisions no longer hold: a snapshot first.
            snap = await b.frame(wait_s=RECOVERY_S)
            assert snap["type"] == "snapshot", snap
            assert [x["sku"] for x in snap["cart"]["lines"]] in ([], ["NEW-1"])
            if snap["rev"] == 0:
                [event] = await b.events(1)
                assert (event["rev"], event["data"]["line"]["sku"]) == (1, "NEW-1")
            await add_lines(a, ["NEW-2"])
            [event] = await b.events(1)
            assert (event["rev"], event["data"]["line"]["sku"]) == (2, "NEW-2")
            await b.quiet()

    # A client resuming from before the outage gets a snapshot, then live events.
    async with rest(outage_service, token) as a, live_when_ready(outage_service, token) as again:
        await again.sync(3)
        snap = await again.frame()
        assert snap["type"] == "snapshot", snap
        cart = (await a.get("/v1/cart")).json()
        assert snap["cart"] == cart
        await add_lines(a, ["NEW-3"])
        [event] = await again.events(1)
        assert (event["rev"], event["data"]["line"]["sku"]) == (cart["rev"] + 1, "NEW-3")
        await again.quiet()


async def test_a_sync_while_redis_is_down_is_told_to_retry_not_refused(
    private_redis: RedisProcess, outage_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a, live(outage_service, token) as b:
        await add_lines(a, ["A-1"])
        private_redis.stop()
        await b.sync(0)  # needs the event log, which is out of reach
        frames, code = await frames_for(b, 3.0)
        # Either the socket waits for Redis or it is closed with "try again later" (1013);
        # 1008 would tell the client its request broke the rules and not to retry.
        assert code in (None, 1013), (code, frames)
        private_redis.start()
        if code is None:
            frames, code = await frames_for(b, RECOVERY_S / 2)
            assert code in (None, 1013), (code, frames)


async def test_an_open_socket_gets_a_snapshot_when_redis_comes_back_with_other_data(
    private_redis: RedisProcess, outage_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    """Redis lost its data, and more changes than the socket had seen were made before the hub
    subscribed again: the socket's revision 3 names old data, so deltas 4, 5 would be wrong.

    Whether the hub resubscribes before or after the new changes is a race; a few rounds make
    the "after" case all but certain to occur, and every round must end right.
    """
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a, live(outage_service, token) as b:
        await b.sync(0)
        skus = ["OLD-1", "OLD-2", "OLD-3"]
        await add_lines(a, skus)
        position = (await b.events(3))[-1]["rev"]
        for round_ in range(3):
            private_redis.stop()
            await asyncio.sleep(3)  # the hub's reconnect back-off grows to its 2 s ceiling
            private_redis.start()  # empty: the owner's data starts again at revision 1
            skus = [f"NEW{round_}-{n}" for n in range(1, position + 3)]
            r = await post_until_created(a, {"sku": skus[0]})
            assert r.status_code == 201, r.text
            await add_lines(a, skus[1:])
            cart = (await a.get("/v1/cart")).json()
            assert cart["rev"] == len(skus) > position

            first = await b.frame(wait_s=RECOVERY_S)
            assert first["type"] == "snapshot", f"round {round_}: deltas on a stale rev: {first}"
            lines = {x["sku"] for x in first["cart"]["lines"]}
            # Whatever the snapshot caught, events continue from it to the same cart.
            for event in await b.events(cart["rev"] - first["rev"]):
                lines.add(event["data"]["line"]["sku"])
            assert lines == set(skus) == {x["sku"] for x in cart["lines"]}
            await b.quiet()
            position = cart["rev"]


async def test_a_client_resuming_with_an_old_epoch_gets_a_snapshot(
    private_redis: RedisProcess, outage_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a:
        async with live(outage_service, token) as b:
            await b.sync(0)
            await add_lines(a, ["OLD-1", "OLD-2", "OLD-3"])
            old_epoch = (await b.events(3))[-1]["epoch"]
            assert old_epoch

        private_redis.stop()
        private_redis.start()
        r = await post_until_created(a, {"sku": "NEW-1"})
        assert r.status_code == 201, r.text
        await add_lines(a, ["NEW-2", "NEW-3", "NEW-4", "NEW-5"])
        cart = (await a.get("/v1/cart")).json()

        async with live_when_ready(outage_service, token) as b:
            assert b.hello["rev"] == 5
            assert b.hello["epoch"] == cart["epoch"] != old_epoch
            await b.send({"type": "sync", "since": 3, "epoch": old_epoch})
            snap = await b.frame()
            assert snap["type"] == "snapshot", f"deltas on a stale revision: {snap}"
            assert snap["cart"] == cart
            await b.quiet()

    # Sanity: with the current epoch the same since is served from the log.
    async with live(outage_service, token) as b:
        await b.send({"type": "sync", "since": 3, "epoch": cart["epoch"]})
        assert [e["rev"] for e in await b.events(2)] == [4, 5]
        await b.quiet()


# A failover that lost the last changes -----------------------------------------------------


async def test_a_client_resuming_on_a_revision_a_failover_reused_gets_a_snapshot(
    private_redis: RedisProcess, outage_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a:
        await add_lines(a, ["KEPT-1", "KEPT-2"])
        back_to_2 = private_redis.save_owner(f"c:{customer_id}")
        async with live(outage_service, token) as b:
            await b.sync(2)
            await add_lines(a, ["LOST-3"])
            (seen,) = await b.events(1)
        back_to_2()
        await add_lines(a, ["NEW-3", "NEW-4"])
        cart = (await a.get("/v1/cart")).json()
        assert (cart["rev"], cart["epoch"]) == (4, seen["epoch"])

        async with live(outage_service, token) as b:
            await b.send({"type": "sync", "since": 3, "epoch": seen["epoch"], "at": seen["at"]})
            snap = await b.frame()
            assert snap["type"] == "snapshot", f"deltas on a revision that was lost: {snap}"
            assert snap["cart"] == cart
            assert "LOST-3" not in {x["sku"] for x in snap["cart"]["lines"]}
            await b.quiet()

        # Sanity: a client whose revision 3 is the server's is served from the log.
        new_3 = (await a.get("/v1/cart/history", params={"since": 2})).json()["events"][0]
        async with live(outage_service, token) as b:
            await b.send({"type": "sync", "since": 3, "epoch": seen["epoch"], "at": new_3["at"]})
            assert [e["rev"] for e in await b.events(1)] == [4]
            await b.quiet()


@pytest.mark.parametrize("pubsub", ["kept", "killed"])
async def test_an_open_socket_on_a_revision_a_failover_reused_gets_a_snapshot(
    private_redis: RedisProcess,
    outage_service: ServiceProcess,
    tokens: Tokens,
    customer_id: str,
    pubsub: str,
) -> None:
    """Whether the socket learns of the reuse from a live event or from the catch-up after its
    subscription was replaced, it gets a snapshot, then events that continue it."""
    token = tokens.token("customer", customer_id)
    async with rest(outage_service, token) as a, live(outage_service, token) as b:
        await b.sync(0)
        await add_lines(a, ["KEPT-1", "KEPT-2"])
        back_to_2 = private_redis.save_owner(f"c:{customer_id}")
        await add_lines(a, ["LOST-3"])
        assert [e["rev"] for e in await b.events(3)] == [1, 2, 3]
        back_to_2()
        if pubsub == "killed":
            with private_redis.client() as r:
                r.client_kill_filter(_type="pubsub")
        await add_lines(a, ["NEW-3", "NEW-4"])
        cart = (await a.get("/v1/cart")).json()

        snap = await b.frame(wait_s=RECOVERY_S)
        assert snap["type"] == "snapshot", f"deltas on a revision that was lost: {snap}"
        lines = {x["sku"] for x in snap["cart"]["lines"]}
        for event in await b.events(cart["rev"] - snap["rev"]):
            lines.add(event["data"]["line"]["sku"])
        assert lines == {"KEPT-1", "KEPT-2", "NEW-3", "NEW-4"} == {x["sku"] for x in cart["lines"]}
        await b.quiet()
