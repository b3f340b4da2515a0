"""The service on a Sentinel-managed master and replica, through a failover under write load.

Several customers add lines concurrently, each add with its own Idempotency-Key; the master is
SIGKILLed part-way. Clients retry with the same keys (503 expected while the sentinels promote
the replica) until the service answers again by itself. A device that was synced over the
websocket resumes and must end with the server's cart. Then the acknowledged adds missing from
the final carts are counted, once without WAIT and once with ``CARTSYNC_REDIS_WAIT_REPLICAS=1``;
the counts are printed (``pytest -s``) and written to ``failover-loss.json`` in the test's tmp
folder. Each runs twice: with the replica in sync, and with its replication link stalled for
STALL_S before the master dies (the master's stream held in a relay, as a congested link
would), so the replica that is promoted lacks what the master acknowledged meanwhile. Asynchronous
replication may lose acknowledged writes, so the counts are measured, not asserted; what is
asserted is what must hold: recovery without help, nothing applied twice, a device that stays
consistent, and (with WAIT) no loss of a write the replica had confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess, service_env
from tests.support.topologies import SentinelSet
from tests.test_live import live, next_frame

pytestmark = pytest.mark.slow

CUSTOMERS = 8
ADDS_PER_CUSTOMER = 40
"""320 adds in all; below the default 200 lines per cart."""
KILL_AFTER_ACKS = 120
"""The master is killed once this many adds have been acknowledged."""
RECOVERY_S = 30.0
"""Longest the service may take to answer again after the kill."""
WAIT_TIMEOUT_MS = 100
HTTP_TIMEOUT_S = 10.0
STALL_S = 0.5
"""How long the stalled replica stops reading the master's stream before the master dies."""
MAX_TRIES = 1000


@dataclass
class Add:
    """One intended change and what the client saw of it."""

    customer: str
    sku: str
    qty: int
    key: str = field(default_factory=lambda: f"add-{uuid.uuid4().hex}")
    acked: bool = False
    rev: int = 0
    replayed: bool = False
    """The first acknowledgement was a replay (the first try ran but its answer was lost)."""
    latency_s: float = 0.0
    """Of the attempt that brought the first acknowledgement."""
    acked_after_kill: bool = False
    tries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass
class Device:
    """A client that mirrors one customer's cart from the websocket, resuming like a real one."""

    rev: int = 0
    epoch: str | None = None
    at: str | None = None
    """When the change at ``rev`` was made: lets the server see that a failover reused it."""
    lines: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    snapshots: int = 0
    close_codes: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    last_in_session: int = 0
    """The highest revision received in the current session (each session must increase)."""

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            self.snapshots += 1
            self.rev, self.epoch = frame["rev"], frame["cart"]["epoch"]
            self.at = frame["cart"]["updated_at"]
            self.lines = {x["sku"]: x["qty"] for x in frame["cart"]["lines"]}
            self.last_in_session = self.rev
        elif frame["type"] == "event":
            event = frame["event"]
            if event["rev"] <= self.last_in_session:
                self.violations.append(f"rev {event['rev']} again after {self.last_in_session}")
            self.last_in_session = max(self.last_in_session, event["rev"])
            if event["rev"] <= self.rev:
                return  # already applied in an earlier session
            if event["rev"] != self.rev + 1:
                self.violations.append(f"gap: rev {event['rev']} after {self.rev}")
            line = event["data"]["line"]
            self.lines[line["sku"]] = line["qty"]
            self.rev, self.epoch, self.at = event["rev"], event["epoch"], event["at"]

    async def follow(self, service: ServiceProcess, token: str, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``; on any close, reconnect and resume with since."""
        for _ in range(MAX_TRIES):
            if stop.is_set():
                return
            try:
                async with live(service, token, open_timeout=5) as sock:
                    self.sessions += 1
                    self.last_in_session = self.rev
                    sync: dict[str, Any] = {"type": "sync", "since": self.rev}
                    if self.epoch is not None:
                        sync["epoch"] = self.epoch
                    if self.at is not None:
                        sync["at"] = self.at
                    await sock.send(sync)
                    while not stop.is_set():
                        try:
                            frame = await next_frame(sock.ws, wait_s=0.2)
                        except TimeoutError:
                            continue
                        self.apply(frame)
                    return
            except ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd else 1006)
            except (OSError, TimeoutError, InvalidHandshake):
                self.close_codes.append(-1)  # not even a handshake: back off and come back
            await asyncio.sleep(0.2)
        raise AssertionError("the device reconnected too many times")

    async def settle(self, cart: dict[str, Any], service: ServiceProcess, token: str) -> None:
        """Follow until the mirror stands where ``cart`` does (bounded). Its revision alone
        would not do: after a lost tail the device may hold the same number for other changes,
        or a higher one."""
        stop = asyncio.Event()
        follower = asyncio.create_task(self.follow(service, token, stop))
        try:
            for _ in range(200):
                if (self.rev, self.at) == (cart["rev"], cart["updated_at"]):
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(follower, 10)


@contextlib.contextmanager
def sentinel_service(
    tmp_path: Path, **overrides: str
) -> Iterator[tuple[SentinelSet, ServiceProcess]]:
    with SentinelSet(tmp_path / "redis") as sentinels:
        env = service_env(
            "",
            tmp_path / "service",
            CARTSYNC_REDIS_SENTINELS=sentinels.sentinel_addresses,
            CARTSYNC_REDIS_SENTINEL_MASTER=sentinels.name,
            **overrides,
        )
        proc = ServiceProcess(env).start()
        try:
            yield sentinels, proc
        finally:
            proc.stop()


async def send_until_acked(
    http: httpx.AsyncClient, add: Add, killed: asyncio.Event, deadline: list[float]
) -> None:
    """POST with one key; retry 503s and lost answers with that key until acknowledged."""
    for _ in range(MAX_TRIES):
        add.tries += 1
        start = time.perf_counter()
        try:
            r = await http.post(
                "/v1/cart/lines",
                json={"sku": add.sku, "qty": add.qty},
                headers={"Idempotency-Key": add.key},
            )
        except httpx.TransportError as exc:
            add.statuses[type(exc).__name__] += 1
        else:
            add.statuses[str(r.status_code)] += 1
            if r.status_code in (200, 201):
                add.acked, add.rev = True, r.json()["rev"]
                add.replayed = r.headers.get("idempotent-replayed") == "true"
                add.latency_s = time.perf_counter() - start
                add.acked_after_kill = killed.is_set()
                return
        assert killed.is_set(), f"{add.sku}: {add.statuses} before the master was killed"
        if time.monotonic() > deadline[0]:
            return
        await asyncio.sleep(0.1)


async def get_until_ok(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    for _ in range(100):
        r = await http.get(path)
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code == 503, r.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"GET {path} kept failing")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stall", [False, True], ids=["replica-in-sync", "replica-stalled"])
@pytest.mark.parametrize("wait", [False, True], ids=["no-wait", "wait-1-replica"])
async def test_a_master_failover_under_write_load(
    tmp_path: Path, tokens: Tokens, wait: bool, stall: bool
) -> None:
    overrides = {"CARTSYNC_REDIS_TIMEOUT_SECONDS": "1"}
    if wait:
        overrides |= {
            "CARTSYNC_REDIS_WAIT_REPLICAS": "1",
            "CARTSYNC_REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
        }
    customers = [f"cust-{uuid.uuid4().hex[:12]}" for _ in range(CUSTOMERS)]
    plan = {
        c: [Add(c, f"{c[-4:]}-{n}", 1 + n % 3) for n in range(ADDS_PER_CUSTOMER)] for c in customers
    }
    killed = asyncio.Event()
    deadline = [float("inf")]  # set to kill time + RECOVERY_S
    timeline: dict[str, float] = {}

    with sentinel_service(tmp_path, **overrides) as (sentinels, service):
        device = Device()
        device_token = tokens.token("customer", customers[0])
        stop_device = asyncio.Event()
        following = asyncio.create_task(device.follow(service, device_token, stop_device))

        async def customer_load(customer: str) -> None:
            headers = tokens.headers("customer", customer)
            async with httpx.AsyncClient(
                base_url=service.url, headers=headers, timeout=HTTP_TIMEOUT_S
            ) as http:
                for add in plan[customer]:
                    await send_until_acked(http, add, killed, deadline)

        async def killer() -> None:
            for _ in range(6000):
                if sum(a.acked for adds in plan.values() for a in adds) >= KILL_AFTER_ACKS:
                    break
                await asyncio.sleep(0.005)
            if stall:
                sentinels.link.stall()
                await asyncio.sleep(STALL_S)
                timeline["held_bytes"] = sentinels.link.held_bytes()
            old = await asyncio.to_thread(sentinels.kill_master)
            timeline["killed"] = time.monotonic()
            deadline[0] = timeline["killed"] + RECOVERY_S
            killed.set()
            await asyncio.to_thread(sentinels.wait_for_failover, old, RECOVERY_S)
            timeline["promoted"] = time.monotonic()

        try:
            await asyncio.gather(killer(), *(customer_load(c) for c in customers))
        finally:
            stop_device.set()
            await asyncio.wait_for(following, 15)

        adds = [a for c in customers for a in plan[c]]
        async with httpx.AsyncClient(base_url=service.url, timeout=HTTP_TIMEOUT_S) as http:
            finals = {}
            histories = {}
            for c in customers:
                headers = tokens.headers("customer", c)
                http.headers.update(headers)
                finals[c] = await get_until_ok(http, "/v1/cart")
                histories[c] = await get_until_ok(http, "/v1/cart/history?since=0")
        await device.settle(finals[customers[0]], service, device_token)

    report = measure(adds, finals, histories, device, customers[0], timeline, wait)
    report["replica"] = f"link stalled {STALL_S} s before the kill" if stall else "in sync"
    report["replication_bytes_held_at_kill"] = timeline.get("held_bytes", 0)
    out = tmp_path / "failover-loss.json"
    out.write_text(json.dumps(report, indent=2))
    print(
        f"\nfailover ({'WAIT 1 ' + str(WAIT_TIMEOUT_MS) + 'ms' if wait else 'no WAIT'}, "
        f"replica {report['replica']}): "
        f"{report['acked']} acked, {report['lost']} lost "
        f"({report['lost_acked_before_kill']} acked before the kill), "
        f"{report['retries_503']} 503s retried; report: {out}"
    )

    # What must hold.
    unacked = [a.sku for a in adds if not a.acked]
    assert not unacked, f"not acknowledged within {RECOVERY_S} s of the kill: {unacked}"
    assert report["applied_twice"] == [], report["applied_twice"]
    assert report["unexpected_statuses"] == {}, report["unexpected_statuses"]
    assert device.violations == [], device.violations
    device_cart = finals[customers[0]]
    assert device.rev == device_cart["rev"], report["device"]
    assert device.lines == {x["sku"]: x["qty"] for x in device_cart["lines"]}, report["device"]
    if wait:
        assert report["lost_after_confirmed_wait"] == [], report["lost_after_confirmed_wait"]


def measure(
    adds: list[Add],
    finals: dict[str, dict[str, Any]],
    histories: dict[str, dict[str, Any]],
    device: Device,
    device_owner: str,
    timeline: dict[str, float],
    wait: bool,
) -> dict[str, Any]:
    """Count what was lost, applied twice, or answered unexpectedly."""
    present = {c: {x["sku"]: x["qty"] for x in cart["lines"]} for c, cart in finals.items()}
    added_events = {
        c: Counter(e["data"]["line"]["sku"] for e in h["events"] if e["type"] == "line.added")
        for c, h in histories.items()
    }
    lost = [a for a in adds if a.acked and a.sku not in present[a.customer]]
    twice = [
        a.sku
        for a in adds
        if present[a.customer].get(a.sku, a.qty) != a.qty or added_events[a.customer][a.sku] > 1
    ]
    # WAIT returns before its timeout only once the replica has the write, so a first,
    # non-replayed acknowledgement that came back sooner than the timeout was replicated.
    confirmed = {
        a.sku
        for a in adds
        if a.acked
        and not a.replayed
        and not a.acked_after_kill
        and a.latency_s < WAIT_TIMEOUT_MS / 1000
    }
    statuses: Counter[str] = Counter()
    for a in adds:
        statuses.update(a.statuses)
    unexpected = {k: v for k, v in statuses.items() if k not in ("200", "201", "503")}
    killed = timeline.get("killed")
    return {
        "mode": f"WAIT 1 {WAIT_TIMEOUT_MS}" if wait else "no WAIT",
        "customers": len(finals),
        "adds": len(adds),
        "acked": sum(a.acked for a in adds),
        "acked_before_kill": sum(a.acked and not a.acked_after_kill for a in adds),
        "lost": len(lost),
        "lost_acked_before_kill": sum(not a.acked_after_kill for a in lost),
        "lost_skus": [a.sku for a in lost],
        "applied_twice": twice,
        "retries_503": statuses["503"],
        "unexpected_statuses": unexpected,
        "first_acked_as_replay": sum(a.acked and a.replayed for a in adds),
        "confirmed_by_wait": len(confirmed) if wait else None,
        "lost_after_confirmed_wait": [a.sku for a in lost if a.sku in confirmed] if wait else None,
        "seconds_kill_to_promotion": (
            round(timeline["promoted"] - killed, 2) if killed and "promoted" in timeline else None
        ),
        "device": {
            "rev": device.rev,
            "sessions": device.sessions,
            "snapshots": device.snapshots,
            "close_codes": device.close_codes,
            "violations": device.violations,
            "lines_missing_on_device": sorted(set(present[device_owner]) - set(device.lines)),
            "lines_only_on_device": sorted(set(device.lines) - set(present[device_owner])),
        },
    }
