"""Device presence: an owner's devices, and a consented tablet, see which of them are live now.

Two service instances on one Redis, as behind a load balancer: joins, renames and leaves reach
every socket of the owner whichever instance serves it, and a crashed instance's devices are
gone from the others' lists within three ping intervals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, kill
from tests.test_consent import claim, handoff
from tests.test_live import Live, bearer, close_code, dial, live, next_frame, running

pytestmark = pytest.mark.slow

PING_S = 0.5
GONE_S = 3 * PING_S + 2.0
"""A crashed instance's devices vanish within three ping intervals (plus a tick and a read)."""


@pytest.fixture
def pair(redis_server: RedisProcess, tmp_path: Path) -> Iterator[tuple[ServiceProcess, ...]]:
    interval = {"CARTSYNC_WS_PING_INTERVAL_SECONDS": str(PING_S)}
    with (
        running(redis_server.url, tmp_path / "a", **interval) as a,
        running(redis_server.url, tmp_path / "b", **interval) as b,
    ):
        yield a, b


async def presence(sock: Live, wait_s: float = 5.0) -> list[dict[str, Any]]:
    """The devices of the next presence frame (other frames are skipped, bounded)."""
    async with asyncio.timeout(wait_s):
        for _ in range(50):
            frame = await sock.frame(wait_s=wait_s)
            if frame["type"] == "presence":
                return list(frame["devices"])
    raise AssertionError("no presence frame")


Named = list[tuple[str | None, str, bool]]


def names(devices: list[dict[str, Any]]) -> Named:
    return sorted(((d["label"], d["kind"], d["you"]) for d in devices), key=lambda t: str(t[0]))


async def settles(sock: Live, expected: Named, wait_s: float = 5.0) -> None:
    """Presence frames arrive until one lists exactly ``expected`` (bounded in time)."""
    want = sorted(expected, key=lambda t: str(t[0]))
    seen: list[Named] = []
    try:
        async with asyncio.timeout(wait_s):
            while not seen or seen[-1] != want:
                seen.append(names(await presence(sock, wait_s)))
    except TimeoutError:
        raise AssertionError(f"presence never showed {want}; saw {seen}") from None


async def test_devices_see_each_other_join_rename_and_leave_across_instances(
    pair: tuple[ServiceProcess, ...], tokens: Tokens, customer_id: str
) -> None:
    a, b = pair
    token = tokens.token("customer", customer_id)
    async with live(a, token) as phone:
        await phone.send({"type": "device", "label": "iPhone", "kind": "phone"})
        await phone.sync()
        await settles(phone, [("iPhone", "phone", True)])
        async with live(b, token) as laptop:
            await laptop.sync()
            # The laptop has not named itself: the phone lists it unnamed, and the laptop,
            # which has not asked for presence, gets no presence frame (it may not know them).
            await settles(phone, [(None, "other", False), ("iPhone", "phone", True)])
            await laptop.send({"type": "device", "label": "Laptop", "kind": "desktop"})
            await settles(laptop, [("Laptop", "desktop", True), ("iPhone", "phone", False)])
            await settles(phone, [("Laptop", "desktop", False), ("iPhone", "phone", True)])
            await laptop.send({"type": "ping"})
            assert await laptop.frame() == {"type": "pong"}  # no presence frame came before
        # The laptop closed: the phone is alone again.
        await settles(phone, [("iPhone", "phone", True)])


async def test_a_consented_tablet_and_the_shoppers_phone_see_each_other(
    service: ServiceProcess, client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    staff_token = tokens.token("staff", "emp-9", store="oslo-1")
    staff = {"Authorization": f"Bearer {staff_token}"}
    grant = await claim(client, await handoff(client, me), staff)
    token = tokens.token("customer", customer_id)
    async with live(service, token) as phone:
        await phone.send({"type": "device", "label": "Pixel", "kind": "phone"})
        await phone.sync()
        await presence(phone)
        protocols = [*bearer(staff_token), f"grant.{grant['id']}"]
        async with dial(service, subprotocols=protocols) as ws:
            tablet = Live(ws, await next_frame(ws))
            await tablet.sync()
            await tablet.send({"type": "device", "label": "Till 3", "kind": "tablet"})
            seen = await presence(tablet)
            by_role = {d["role"]: d for d in seen}
            assert by_role["customer"]["label"] == "Pixel"
            assert by_role["staff"] == {
                "id": by_role["staff"]["id"],
                "label": "Till 3",
                "kind": "tablet",
                "role": "staff",
                "store": "oslo-1",
                "you": True,
            }
            await settles(phone, [("Pixel", "phone", True), ("Till 3", "tablet", False)])
        await settles(phone, [("Pixel", "phone", True)])


async def test_a_crashed_instances_devices_vanish_within_three_ping_intervals(
    pair: tuple[ServiceProcess, ...], tokens: Tokens, customer_id: str
) -> None:
    a, b = pair
    token = tokens.token("customer", customer_id)
    async with live(a, token) as phone:
        await phone.send({"type": "device", "label": "iPhone", "kind": "phone"})
        await phone.sync()
        await presence(phone)
        laptop_ws = await dial(b, subprotocols=bearer(token))
        try:
            await next_frame(laptop_ws)
            await laptop_ws.send(json.dumps({"type": "device", "label": "Laptop"}))
            await settles(phone, [("Laptop", "other", False), ("iPhone", "phone", True)])
            kill(b.proc)  # no goodbye: the laptop's entry stays in Redis
            loop = asyncio.get_running_loop()
            started = loop.time()
            await settles(phone, [("iPhone", "phone", True)], wait_s=GONE_S)
            print(f"presence: a crashed instance's device gone after {loop.time() - started:.2f} s")
        finally:
            laptop_ws.transport.abort()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "device", "label": ""},
        {"type": "device", "label": "x" * 65},
        {"type": "device", "label": "Watch", "kind": "watch"},
        {"type": "device"},
    ],
)
async def test_a_bad_device_frame_is_closed_with_1008(
    service: ServiceProcess, tokens: Tokens, customer_id: str, frame: dict[str, Any]
) -> None:
    async with live(service, tokens.token("customer", customer_id)) as sock:
        await sock.send(frame)
        assert await close_code(sock.ws) == 1008
