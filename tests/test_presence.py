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


def names(devices: list[dict[str, Any]]) -> list[tuple[str | None, str, bool]]:
    return sorted(((d["label"], d["kind"], d["you"]) for d in devices), key=str)


async def test_devices_see_each_other_join_rename_and_leave_across_instances(
    pair: tuple[ServiceProcess, ...], tokens: Tokens, customer_id: str
) -> None:
    a, b = pair
    token = tokens.token("customer", customer_id)
    async with live(a, token) as phone:
        await phone.send({"type": "device", "label": "iPhone", "kind": "phone"})
        await phone.sync()
        assert names(await presence(phone)) == [("iPhone", "phone", True)]
        async with live(b, token) as laptop:
            await laptop.sync()
            # The laptop has not named itself yet: it is listed, unnamed.
            assert names(await presence(laptop)) == [
                (None, "other", True),
                ("iPhone", "phone", False),
            ]
            assert names(await presence(phone)) == [
                (None, "other", False),
                ("iPhone", "phone", True),
            ]
            await laptop.send({"type": "device", "label": "Laptop", "kind": "desktop"})
            expected = [("Laptop", "desktop", False), ("iPhone", "phone", True)]
            assert names(await presence(phone)) == expected
        # The laptop closed: the phone is alone again.
        assert names(await presence(phone)) == [("iPhone", "phone", True)]


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
            seen = await presence(tablet)
            by_role = {d["role"]: d for d in seen}
            assert by_role["customer"]["label"] == "Pixel"
            assert by_role["staff"] == {
                "id": by_role["staff"]["id"],
                "label": None,
                "kind": "tablet",
                "role": "staff",
                "store": "oslo-1",
                "you": True,
            }
            phone_view = await presence(phone)
            assert {d["role"] for d in phone_view} == {"customer", "staff"}
        assert [d["role"] for d in await presence(phone)] == ["customer"]


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
            assert len(await presence(phone)) == 2
            kill(b.proc)  # no goodbye: the laptop's entry stays in Redis
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert names(await presence(phone, wait_s=GONE_S)) == [("iPhone", "phone", True)]
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
