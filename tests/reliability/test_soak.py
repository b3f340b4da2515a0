"""A soak across two instances on one Redis, with the pub/sub connections killed every 10 s.

Bounded: 30 s, 50 sockets, 20 changes a second. ``CARTSYNC_SOAK=1``: 3 minutes, 200 sockets,
50 changes a second. Every socket must see every revision of its owner once and in order (the
event log fills whatever pub/sub dropped); memory must not drift, and once the sockets are gone
each instance's tasks and descriptors are back at their baseline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
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
    MAX_FRAMES,
    SOAK,
    Vitals,
    bearer,
    dial,
    fds_to_port,
    gaps_and_repeats,
    next_frame,
    rss_mb,
    running,
    scrape,
    settle,
    vitals,
    watch,
)
from tests.support.processes import RedisProcess, ServiceProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

DURATION_S = 180.0 if SOAK else 30.0
SOCKETS = 200 if SOAK else 50
RATE = 50 if SOAK else 20
"""Changes per second, across all customers, alternating between the instances."""
PER_CUSTOMER = 5
"""Sockets per customer, spread over both instances."""
KILL_EVERY_S = 10.0
RSS_DRIFT_MB = 20.0
CATCH_UP_S = 30.0
TOLERANCE = {"tasks": 3, "fds": 2}
"""Above the baseline; descriptors are counted without the Redis pool's (it grows with
concurrency: the catch-up reads after each pub/sub kill run at once)."""
IDLE_HTTP_S = 6.0
"""Hypercorn closes an idle HTTP connection after 5 s: the baseline is taken without any."""


@dataclass
class Device:
    customer: str
    instance: int
    ws: ClientConnection
    revs: list[int] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)
    """Anything a device on a healthy feed should never see: snapshots, closes."""


async def follow(device: Device, last_rev: dict[str, int], stop: asyncio.Event) -> None:
    """Read events until told to stop and the owner's last revision arrived."""
    for _ in range(MAX_FRAMES):
        try:
            frame = await next_frame(device.ws, wait_s=0.5)
        except TimeoutError:
            done = device.revs[-1] if device.revs else 0
            if stop.is_set() and done >= last_rev[device.customer]:
                return
            continue
        except ConnectionClosed as closed:
            device.odd.append(f"closed {closed.rcvd}")
            return
        if frame["type"] == "event":
            device.revs.append(frame["event"]["rev"])
        else:
            device.odd.append(f"{frame['type']} at rev {frame.get('rev')}")


async def test_two_instances_lose_no_event_while_pubsub_is_killed(
    own_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    run = uuid.uuid4().hex[:8]
    customers = [f"soak-{run}-{n}" for n in range(SOCKETS // PER_CUSTOMER)]
    token_of = {c: tokens.token("customer", c) for c in customers}
    last_rev = dict.fromkeys(customers, 0)
    with (
        running(own_redis.url, tmp_path / "one") as one,
        running(own_redis.url, tmp_path / "two") as two,
    ):
        instances: list[ServiceProcess] = [one, two]
        clients = [httpx.AsyncClient(base_url=svc.url, timeout=10) for svc in instances]
        async with contextlib.AsyncExitStack() as stack:
            watchers = [await stack.enter_async_context(watch(svc)) for svc in instances]
            rest = await stack.enter_async_context(contextlib.AsyncExitStack())
            for http in clients:
                await rest.enter_async_context(http)
            # Warm the REST path, then the baseline of each instance without sockets.
            for n, c in enumerate(customers):
                headers = {"Authorization": f"Bearer {token_of[c]}"}
                r = await clients[n % 2].get("/v1/cart", headers=headers)
                assert r.status_code == 200, r.text
            await asyncio.sleep(IDLE_HTTP_S)
            baseline = [await vitals(svc, w) for svc, w in zip(instances, watchers, strict=True)]
            baseline_pool = [fds_to_port(svc, own_redis.port) for svc in instances]

            async with contextlib.AsyncExitStack() as sockets:
                devices: list[Device] = []
                for n in range(SOCKETS):
                    customer = customers[n % len(customers)]
                    where = (n // len(customers)) % 2
                    ws = await sockets.enter_async_context(
                        dial(instances[where], subprotocols=bearer(token_of[customer]))
                    )
                    hello = await next_frame(ws)
                    assert hello["type"] == "hello", hello
                    assert hello["rev"] == 0, hello
                    await ws.send('{"type": "sync", "since": 0}')
                    devices.append(Device(customer, where, ws))

                stop = asyncio.Event()
                following = [asyncio.create_task(follow(d, last_rev, stop)) for d in devices]
                admin = own_redis.client()
                stack.callback(admin.close)
                killed = 0
                rss: list[list[float]] = [[], []]
                started = time.monotonic()
                next_kill = started + KILL_EVERY_S
                next_sample = started
                for n in range(int(DURATION_S * RATE)):
                    due = started + n / RATE
                    now = time.monotonic()
                    if now >= next_kill:
                        killed += int(admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
                        next_kill += KILL_EVERY_S
                    if now >= next_sample:
                        for i, svc in enumerate(instances):
                            rss[i].append(rss_mb(svc))
                        next_sample += 1.0
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    customer = customers[n % len(customers)]
                    note = base64.b64encode(os.urandom(150)).decode()
                    r = await clients[n % 2].put(
                        "/v1/cart/note",
                        json={"note": note},
                        headers={"Authorization": f"Bearer {token_of[customer]}"},
                    )
                    assert r.status_code == 200, r.text
                    last_rev[customer] = r.json()["rev"]
                    if any(f.done() for f in following):
                        break
                wrote_s = time.monotonic() - started
                stop.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CATCH_UP_S):
                        await asyncio.gather(*following)
                for f in following:
                    f.cancel()
                at_end = [await vitals(svc, w) for svc, w in zip(instances, watchers, strict=True)]
                reconnects = [
                    (await scrape(svc, w))["cartsync_pubsub_reconnects_total"]
                    for svc, w in zip(instances, watchers, strict=True)
                ]
            await rest.aclose()  # no REST connections either, as at the baseline

            # The sockets are gone: each instance back at its baseline.
            last: list[Vitals] = []

            async def released() -> bool:
                now = [await vitals(svc, w) for svc, w in zip(instances, watchers, strict=True)]
                last[:] = now
                pools = [fds_to_port(svc, own_redis.port) for svc in instances]
                return all(
                    n.connections == b.connections
                    and n.channels == b.channels
                    and n.tasks <= b.tasks + TOLERANCE["tasks"]
                    and n.fds - pool <= b.fds - b_pool + TOLERANCE["fds"]
                    for n, b, pool, b_pool in zip(now, baseline, pools, baseline_pool, strict=True)
                )

            settled = await settle(released)

    missed = {
        f"{d.customer}@{d.instance + 1}": problem
        for d in devices
        if (problem := gaps_and_repeats(d.revs, 1, last_rev[d.customer]))
    }
    odd = {f"{d.customer}@{d.instance + 1}": d.odd for d in devices if d.odd}
    # Drift: from the first 5 s of traffic (sockets open, buffers warm) to the end.
    warm = [min(samples[: max(1, min(5, len(samples)))]) for samples in rss]
    drift = [end.rss_mb - w for end, w in zip(at_end, warm, strict=True)]
    events = sum(len(d.revs) for d in devices)
    print(
        f"\nsoak: {SOCKETS} sockets on 2 instances, {sum(last_rev.values())} changes in "
        f"{wrote_s:.1f} s ({sum(last_rev.values()) / wrote_s:.1f}/s), {killed} pub/sub "
        f"connections killed (reconnects {[int(r) for r in reconnects]}); {events} events "
        f"delivered, {len(missed)} sockets missed some, "
        f"{len(odd)} saw snapshots or closes; RSS drift "
        f"{', '.join(f'{d:+.1f} MB' for d in drift)} (warm {', '.join(f'{w:.1f}' for w in warm)}"
        f" MB); baseline {' | '.join(b.line() for b in baseline)}; after "
        f"{' | '.join(a.line() for a in last)}"
    )
    assert killed >= 2 * int(wrote_s // KILL_EVERY_S), f"only {killed} pub/sub kills"
    assert not missed, dict(list(missed.items())[:5])
    assert not odd, dict(list(odd.items())[:5])
    assert all(d <= RSS_DRIFT_MB for d in drift), f"RSS drift {drift} MB"
    assert settled, (
        f"not back at baseline: {' | '.join(b.line() for b in baseline)} -> "
        f"{' | '.join(a.line() for a in last)}"
    )
