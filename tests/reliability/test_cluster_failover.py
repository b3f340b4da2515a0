"""A Redis Cluster master that dies or hangs under write load, and the cluster's own failover.

Three masters with a replica each on loopback, two cartsync processes on them
(``CARTSYNC_REDIS_CLUSTER=true``): customers spread over the three masters add lines through
the first over REST, each add with its own Idempotency-Key and retried with it on 503 until
acknowledged; the second only serves sockets. Every customer of the master that fails has a
websocket device (the Python client's ``Subscription`` feeding a ``CartMirror``) on each
instance; a copy of the first, frozen at the fault, resumes afterwards on the second with
``since``/``epoch``/``at`` like an app reopened. Part-way, that master (the service's seed
node) fails, and its replica is promoted by the cluster itself. Three faults:

- ``kill``: SIGKILL, the replica in sync;
- ``kill-stalled``: SIGKILL after the replica's stream was held back STALL_S (the master
  announces a relay, ``ReplicationLink``, that holds what it sends its replica, as a congested
  link would), so the promoted replica lacks what the master acknowledged meanwhile and the
  devices have seen changes the cluster then loses;
- ``hang``: SIGSTOP (sockets stay open, nothing answers, like a hung host).

Measured and printed (``pytest -s``), and written to ``cluster-failover.json`` in the test's
tmp folder: acknowledged adds missing from the final carts, how long after the fault writes to
that master's customers succeed again, the 503s on the way, the slowest answer.

Replication is asynchronous, so losses are not asserted to be zero; asserted is what must
hold: only customers of the failed master lose anything, and only adds acknowledged shortly
before the fault; nothing applied twice; no status but 200/201/503 (503 with Retry-After) and
no error in the service's log; every answer within ANSWER_WITHIN_S; writes succeed again
without help; every device, live or resumed, ends equal to the server's cart, with a snapshot
whenever the failover lost a change it had seen.

The service refuses ``CARTSYNC_REDIS_WAIT_REPLICAS`` on a Cluster, so there is no WAIT
variant here. ``CARTSYNC_SOAK=1`` runs more customers, longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from cartsync.storage.keys import OwnerKeys
from tests.conftest import Tokens
from tests.support.processes import ROOT, ServiceProcess, service_env
from tests.support.topologies import RedisCluster3
from tests.test_live import live, next_frame

CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

from cartsync_client import (  # noqa: E402
    Backoff,
    Cart,
    CartMirror,
    Event,
    MirrorError,
    Snapshot,
    Subscription,
    Wishlist,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SOAK = os.environ.get("CARTSYNC_SOAK") == "1"
CUSTOMERS_PER_MASTER = 5 if SOAK else 3
ADDS_PER_CUSTOMER = 190 if SOAK else 110
"""Below the default 200 lines per cart: every add is a new line."""
PACE_S = 0.05 if SOAK else 0.02
"""A shopper's pause between adds, so that the load spans the failover."""
KILL_AT = 0.4
"""The replica is stalled (then the master killed) once this share of the adds is acked."""
NODE_TIMEOUT_MS = 1500
HUNG_NODE_TIMEOUT_MS = 5000
"""Longer for a hung master, so that requests held until the promotion would show."""
REDIS_TIMEOUT_S = 1.0
"""CARTSYNC_REDIS_TIMEOUT_SECONDS of the service."""
ANSWER_WITHIN_S = 5 * REDIS_TIMEOUT_S
"""Every request is answered within this, failover or not: a 503 rather than a long wait
(redis-py's cluster client alone would retry 10 times, one socket timeout each)."""
STALL_S = 0.5
"""How long the replica's stream is held back before the master dies (stalled variant)."""
LOSS_WINDOW_S = 1.0
"""An add acknowledged longer than this (plus the stall) before the kill must survive it."""
RECOVERY_S = 30.0
"""Longest the killed master's customers may wait for writes to succeed again."""
LOAD_LIMIT_S = 300.0 if SOAK else 90.0
"""Longest the write load may run, fault or not."""
HTTP_TIMEOUT_S = 10.0
MAX_TRIES = 1000
SETTLE_S = 20.0
"""Longest a device may take to reach the server's final cart."""


@dataclass
class Add:
    """One intended change and what the client saw of it."""

    customer: str
    sku: str
    qty: int
    key: str = field(default_factory=lambda: f"add-{uuid.uuid4().hex}")
    acked: bool = False
    rev: int = 0
    acked_at: float = 0.0
    """time.monotonic() when the first acknowledgement arrived."""
    sent_at: float = 0.0
    """When the attempt that brought it was sent."""
    first_sent_after_fault: float | None = None
    """When the first attempt sent after the fault left (None: none was)."""
    statuses: Counter[str] = field(default_factory=Counter)
    slowest_503_s: float = 0.0
    """The longest a 503 took to come back."""
    slowest_after_fault_s: float = 0.0
    """The longest an attempt answered (or failed) after the fault took."""


@dataclass
class Device:
    """The customer's phone: the Python client's live subscription feeding a local mirror."""

    customer: str
    mirror: CartMirror = field(default_factory=CartMirror)
    seen: set[tuple[int, str]] = field(default_factory=set)
    """(rev, at) of every event the mirror applied."""
    snapshots: list[float] = field(default_factory=list)
    """time.monotonic() of each snapshot taken (the first one starts the mirror)."""
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    epoch: str | None = None

    async def follow(self, sub: Subscription) -> None:
        try:
            for _ in range(1_000_000):  # bounded; the test cancels it long before
                update = await anext(sub)
                self.take(update)
                self.connections = sub.connections
        except Exception as exc:  # the subscription gave up: the device is stuck
            self.errors.append(f"subscription ended: {exc!r}")

    def take(self, update: Snapshot | Event) -> None:
        try:
            if isinstance(update, Snapshot):
                self.snapshots.append(time.monotonic())
                self.mirror.apply(update)
                self.epoch = update.cart.epoch
            elif self.mirror.apply(update):
                self.seen.add((update.rev, update.at))
                self.epoch = update.epoch or self.epoch
        except MirrorError as exc:
            self.errors.append(str(exc))

    def offline_copy(self) -> Device:
        """A device that stops here (its app closed) and resumes later from what it kept."""
        return Device(self.customer, copy.deepcopy(self.mirror), set(self.seen), epoch=self.epoch)

    async def resume(self, service: ServiceProcess, token: str, cart: Cart, end: float) -> None:
        """Reconnect as an app does, retrying a refused socket (1013: try again later) until
        ``end`` (monotonic), and apply what comes until the mirror equals ``cart``."""
        failure = "resume: no attempt"
        for _ in range(100):
            try:
                async with asyncio.timeout(max(end - time.monotonic(), 0.1)):
                    await self._resume_once(service, token, cart)
                return
            except (ConnectionClosed, TimeoutError) as exc:
                failure = f"resume: {exc!r}"
            if time.monotonic() > end:
                break
            await asyncio.sleep(0.5)
        self.errors.append(failure)

    async def _resume_once(self, service: ServiceProcess, token: str, cart: Cart) -> None:
        """``sync`` with ``since``, ``epoch`` and ``at`` as docs/protocol.md says."""
        sync: dict[str, Any] = {"type": "sync", "since": self.mirror.rev}
        if self.epoch is not None:
            sync["epoch"] = self.epoch
        if self.mirror.updated_at is not None:
            sync["at"] = self.mirror.updated_at
        async with live(service, token, open_timeout=10) as sock:
            await sock.send(sync)
            for _ in range(10_000):
                if self.mirror.agrees_with(cart):
                    return
                frame = await next_frame(sock.ws, wait_s=SETTLE_S)
                if frame["type"] == "snapshot":
                    self.take(
                        Snapshot(
                            frame["rev"],
                            msgspec.convert(frame["cart"], Cart),
                            msgspec.convert(frame["wishlists"], list[Wishlist]),
                        )
                    )
                elif frame["type"] == "event":
                    self.take(msgspec.convert(frame["event"], Event))


@contextlib.contextmanager
def cluster_service(
    tmp_path: Path, *, stall: bool, node_timeout_ms: int
) -> Iterator[tuple[RedisCluster3, ServiceProcess, ServiceProcess]]:
    """The cluster, the instance that takes the writes, and a second one that only serves
    sockets (its hub must find the new master without a write to refresh its slot map)."""
    cluster = RedisCluster3(
        tmp_path / "cluster", replicas=1, node_timeout_ms=node_timeout_ms, links=stall
    )
    with cluster, contextlib.ExitStack() as stack:
        procs = []
        for name in ("service", "reader"):
            env = service_env(
                cluster.seed_url,
                tmp_path / name,
                CARTSYNC_REDIS_CLUSTER="true",
                CARTSYNC_REDIS_TIMEOUT_SECONDS=str(REDIS_TIMEOUT_S),
            )
            procs.append(ServiceProcess(env).start())
            stack.callback(procs[-1].stop)
        yield cluster, procs[0], procs[1]


def customers_by_master(cluster: RedisCluster3) -> dict[int, list[str]]:
    """CUSTOMERS_PER_MASTER fresh customer ids for each master (announced port)."""
    masters = {cluster.owner_of(s) for s in (0, 8000, 16383)}
    assert len(masters) == 3, masters
    spread: dict[int, list[str]] = {m: [] for m in masters}
    owners = cluster.slot_owners()
    for _ in range(2000):
        if all(len(c) == CUSTOMERS_PER_MASTER for c in spread.values()):
            return spread
        customer = f"cust-{uuid.uuid4().hex[:12]}"
        group = spread[owners[cluster.keyslot(OwnerKeys(f"c:{customer}").meta)]]
        if len(group) < CUSTOMERS_PER_MASTER:
            group.append(customer)
    raise AssertionError("2000 random customers did not spread over the three masters")


async def send_until_acked(
    http: httpx.AsyncClient, add: Add, timeline: dict[str, float], deadline: list[float]
) -> None:
    """POST with one key; retry 503s and lost answers with that key until acknowledged."""
    for _ in range(MAX_TRIES):
        sent = time.monotonic()
        if "fault" in timeline and add.first_sent_after_fault is None:
            add.first_sent_after_fault = sent
        r: httpx.Response | None = None
        try:
            r = await http.post(
                "/v1/cart/lines",
                json={"sku": add.sku, "qty": add.qty},
                headers={"Idempotency-Key": add.key},
            )
        except httpx.TransportError as exc:
            add.statuses[type(exc).__name__] += 1
        if "fault" in timeline:  # answered (or failed) after the fault, maybe sent before it
            took = time.monotonic() - sent
            add.slowest_after_fault_s = max(add.slowest_after_fault_s, took)
        if r is not None:
            add.statuses[str(r.status_code)] += 1
            if r.status_code in (200, 201):
                add.acked, add.rev, add.acked_at = True, r.json()["rev"], time.monotonic()
                add.sent_at = sent
                return
            if r.status_code != 503:
                return  # a 4xx or 500 would only repeat; the test fails on it
            add.slowest_503_s = max(add.slowest_503_s, time.monotonic() - sent)
            if r.headers.get("retry-after") is None:
                add.statuses["503 without Retry-After"] += 1
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


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["kill", "kill-stalled", "hang"])
async def test_a_cluster_master_failover_under_write_load(
    tmp_path: Path, tokens: Tokens, fault: str
) -> None:
    """``kill``: SIGKILL with the replica in sync; ``kill-stalled``: SIGKILL after the
    replica's stream was held back STALL_S; ``hang``: SIGSTOP (the master keeps its sockets
    open and answers nothing, like a hung host) until the test ends."""
    stall = fault == "kill-stalled"
    timeline: dict[str, float] = {}
    deadline = [time.monotonic() + LOAD_LIMIT_S]  # from the fault on: fault + RECOVERY_S

    node_timeout_ms = HUNG_NODE_TIMEOUT_MS if fault == "hang" else NODE_TIMEOUT_MS
    with cluster_service(tmp_path, stall=stall, node_timeout_ms=node_timeout_ms) as (
        cluster,
        service,
        reader,
    ):
        spread = customers_by_master(cluster)
        # The master of the seed node the service started from: the hardest one to lose.
        victim = next(m for m in spread if cluster.announced[m] == cluster.ports[0])
        victim_slot = cluster.keyslot(OwnerKeys(f"c:{spread[victim][0]}").meta)
        affected = spread[victim]
        customers = [c for group in spread.values() for c in group]
        plan = {
            c: [Add(c, f"{c[-4:]}-{n}", 1 + n % 3) for n in range(ADDS_PER_CUSTOMER)]
            for c in customers
        }
        # Per customer of the failed master: a device on each instance, by "<customer>@<where>".
        instances = {"writer": service, "reader": reader}
        devices = {f"{c}@{where}": Device(c) for c in affected for where in instances}
        offline: dict[str, Device] = {}
        """Each writer-side device as it stood at the fault, resumed on the reader at the end."""
        subs = {
            label: Subscription(
                instances[label.partition("@")[2]].url,
                tokens.token("customer", d.customer),
                backoff=Backoff(base=0.05, cap=0.5),
                device_id=f"phone-{label}",
            )
            for label, d in devices.items()
        }

        async def customer_load(customer: str) -> None:
            headers = tokens.headers("customer", customer)
            async with httpx.AsyncClient(
                base_url=service.url, headers=headers, timeout=HTTP_TIMEOUT_S
            ) as http:
                for add in plan[customer]:
                    await send_until_acked(http, add, timeline, deadline)
                    await asyncio.sleep(PACE_S)

        async def killer() -> None:
            for _ in range(int(LOAD_LIMIT_S / 0.005)):
                acked = sum(a.acked for adds in plan.values() for a in adds)
                if acked >= KILL_AT * len(plan) * ADDS_PER_CUSTOMER:
                    break
                if time.monotonic() > deadline[0] or all(t.done() for t in loads):
                    raise AssertionError(f"only {acked} adds acknowledged before the fault")
                await asyncio.sleep(0.005)
            if stall:
                cluster.links[cluster.announced[victim]].stall()
                timeline["stalled"] = time.monotonic()
                await asyncio.sleep(STALL_S)
                timeline["held_bytes"] = cluster.links[cluster.announced[victim]].held_bytes()
            timeline["fault_sent"] = time.monotonic()
            await asyncio.to_thread(cluster.pause if fault == "hang" else cluster.kill, victim)
            timeline["fault"] = time.monotonic()
            offline.update({c: devices[f"{c}@writer"].offline_copy() for c in affected})
            deadline[0] = timeline["fault"] + RECOVERY_S
            promoted = await asyncio.to_thread(
                cluster.wait_for_failover, victim, victim_slot, RECOVERY_S
            )
            timeline["promoted"] = time.monotonic()
            timeline["new_master"] = promoted

        async with contextlib.AsyncExitStack() as stack:
            for sub in subs.values():
                await stack.enter_async_context(sub)
            following = [asyncio.create_task(d.follow(subs[label])) for label, d in devices.items()]
            try:
                loads = [asyncio.create_task(customer_load(c)) for c in customers]
                try:
                    await asyncio.gather(killer(), *loads)
                finally:
                    for task in loads:
                        task.cancel()
                finals: dict[str, dict[str, Any]] = {}
                histories: dict[str, dict[str, Any]] = {}
                async with httpx.AsyncClient(base_url=service.url, timeout=HTTP_TIMEOUT_S) as http:
                    for c in customers:
                        http.headers.update(tokens.headers("customer", c))
                        finals[c] = await get_until_ok(http, "/v1/cart")
                        histories[c] = await get_until_ok(http, "/v1/cart/history?since=0")
                # Each device must reach the server's cart by itself (bounded).
                end = time.monotonic() + SETTLE_S
                for d in devices.values():
                    cart = msgspec.convert(finals[d.customer], Cart)
                    for _ in range(int(SETTLE_S / 0.05)):
                        if d.mirror.agrees_with(cart) or time.monotonic() > end:
                            break
                        await asyncio.sleep(0.05)
            finally:
                for task in following:
                    task.cancel()
                for task in following:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, 5)
        end = time.monotonic() + SETTLE_S
        for c, device in offline.items():
            token = tokens.token("customer", c)
            await device.resume(reader, token, msgspec.convert(finals[c], Cart), end)
        service_log = "\n".join(s.log_path.read_text(errors="replace") for s in instances.values())

    adds = [a for c in customers for a in plan[c]]
    report = measure(adds, affected, finals, histories, devices, offline, timeline)
    report["fault"] = {
        "kill": "master SIGKILLed, replica in sync",
        "kill-stalled": f"master SIGKILLed, replica's stream held {STALL_S} s before",
        "hang": "master SIGSTOPped (hung), replica in sync",
    }[fault]
    report["cluster_node_timeout_ms"] = node_timeout_ms
    report["replication_bytes_held_at_kill"] = timeline.get("held_bytes", 0)
    out = tmp_path / "cluster-failover.json"
    out.write_text(json.dumps(report, indent=2))
    lost_note = (
        f"all acked < {report['lost_acked_max_s_before_kill']:.2f} s before the kill "
        f"({len(report['lost_acked_after_kill'])} answered just after it), "
        "all on the killed master"
        if report["lost"]
        else "none"
    )
    print(
        f"\ncluster failover ({report['fault']}, node timeout {node_timeout_ms} ms): "
        f"acked {report['acked']}, "
        f"lost {report['lost']} ({lost_note}), promoted after {report['s_kill_to_promotion']} s, "
        f"writes again after {report['s_kill_to_writes_again']} s, 503s retried "
        f"{report['retries_503_affected']} (killed master's customers) / "
        f"{report['retries_503_others']} (others), slowest answer after the fault "
        f"{report['slowest_answer_after_fault_s']} s, {len(devices)} devices "
        f"{'equal' if report['devices_equal'] else 'DIFFERENT'} "
        f"({report['devices_that_saw_lost_changes']} saw lost changes, "
        f"{report['devices_resnapshotted']} got a fresh snapshot; resumed after being offline: "
        f"{report['offline_devices_resnapshotted']} by snapshot, "
        f"{report['offline_devices_by_events']} by events); report: {out}"
    )

    # What must hold.
    assert "fault" in timeline, timeline
    assert "promoted" in timeline, timeline
    if stall:
        assert timeline["held_bytes"] > 0, "the replica's stream was not held back"
    unacked = [a.sku for a in adds if not a.acked]
    assert not unacked, f"not acknowledged within {RECOVERY_S} s of the kill: {unacked[:20]}"
    assert report["unexpected_statuses"] == {}, (report["unexpected_statuses"], service_log[-4000:])
    failures = [
        ln
        for ln in service_log.splitlines()
        if any(mark in ln for mark in ('"level": "ERROR"', "[ERROR]", "Traceback"))
    ]
    assert failures == [], failures[:10]
    assert report["slowest_answer_after_fault_s"] < ANSWER_WITHIN_S, report
    assert report["applied_twice"] == [], report["applied_twice"]
    assert report["lost_on_other_masters"] == [], report["lost_on_other_masters"]
    assert report["lost_sent_after_fault"] == [], report["lost_sent_after_fault"]
    window = LOSS_WINDOW_S + (STALL_S if stall else 0.0)
    assert report["lost_acked_max_s_before_kill"] < window, report["lost_skus"]
    assert all(report["writes_again_per_customer"].values()), report["writes_again_per_customer"]
    for label, device in devices.items():
        detail = report["devices"][label]
        assert device.errors == [], detail
        assert device.mirror.agrees_with(msgspec.convert(finals[device.customer], Cart)), detail
        if detail["saw_lost_changes"]:
            assert detail["snapshots_after_kill"] >= 1, detail
    for c, device in offline.items():
        detail = report["offline_devices"][c]
        assert device.errors == [], detail
        assert device.mirror.agrees_with(msgspec.convert(finals[c], Cart)), detail
        if detail["saw_lost_changes"]:
            assert detail["snapshots"] >= 1, detail


def measure(
    adds: list[Add],
    affected: list[str],
    finals: dict[str, dict[str, Any]],
    histories: dict[str, dict[str, Any]],
    devices: dict[str, Device],
    offline: dict[str, Device],
    timeline: dict[str, float],
) -> dict[str, Any]:
    """Count what was lost, applied twice or answered unexpectedly, and how long writes to
    the killed master's customers waited."""
    killed = timeline["fault"]
    present = {c: {x["sku"]: x["qty"] for x in cart["lines"]} for c, cart in finals.items()}
    added = {
        c: Counter(e["data"]["line"]["sku"] for e in h["events"] if e["type"] == "line.added")
        for c, h in histories.items()
    }
    kept = {c: {(e["rev"], e["at"]) for e in h["events"]} for c, h in histories.items()}
    lost = [a for a in adds if a.acked and a.sku not in present[a.customer]]
    twice = [
        a.sku
        for a in adds
        if present[a.customer].get(a.sku, a.qty) != a.qty or added[a.customer][a.sku] > 1
    ]
    statuses = {"affected": Counter[str](), "others": Counter[str]()}
    for a in adds:
        statuses["affected" if a.customer in affected else "others"].update(a.statuses)
    unexpected = {
        k: v
        for group in statuses.values()
        for k, v in group.items()
        if k not in ("200", "201", "503")
    }
    # Per customer of the killed master: from the kill to the first acknowledgement of an
    # attempt sent after it.
    writes_again: dict[str, float | None] = {}
    for c in affected:
        after = [
            a.acked_at - killed
            for a in adds
            if a.customer == c and a.acked and a.first_sent_after_fault is not None
        ]
        writes_again[c] = round(min(after), 2) if after else None
    again = [s for s in writes_again.values() if s is not None]
    device_report = {}
    for label, d in devices.items():
        c = d.customer
        saw_lost = sorted(rev for rev, at in d.seen if (rev, at) not in kept[c])
        device_report[label] = {
            "rev": d.mirror.rev,
            "server_rev": finals[c]["rev"],
            "connections": d.connections,
            "snapshots_after_kill": sum(t > killed for t in d.snapshots),
            "saw_lost_changes": saw_lost,
            "errors": d.errors,
            "equal": d.mirror.agrees_with(msgspec.convert(finals[c], Cart)),
        }
    offline_report = {}
    for c, d in offline.items():
        offline_report[c] = {
            "rev": d.mirror.rev,
            "server_rev": finals[c]["rev"],
            "snapshots": len(d.snapshots),
            "saw_lost_changes": sorted(rev for rev, at in d.seen if (rev, at) not in kept[c]),
            "errors": d.errors,
            "equal": d.mirror.agrees_with(msgspec.convert(finals[c], Cart)),
        }
    return {
        "customers": len(finals),
        "customers_on_killed_master": len(affected),
        "adds": len(adds),
        "acked": sum(a.acked for a in adds),
        "lost": len(lost),
        "lost_skus": [a.sku for a in lost],
        "lost_on_other_masters": [a.sku for a in lost if a.customer not in affected],
        # An add acknowledged just after the kill may have run just before it; one sent after
        # it cannot have run on the master that died.
        "lost_acked_after_kill": [a.sku for a in lost if a.acked_at >= killed],
        "lost_sent_after_fault": [a.sku for a in lost if a.sent_at >= timeline["fault_sent"]],
        "lost_acked_max_s_before_kill": round(
            max((killed - a.acked_at for a in lost), default=0), 3
        ),
        "applied_twice": twice,
        "retries_503_affected": statuses["affected"]["503"],
        "retries_503_others": statuses["others"]["503"],
        "unexpected_statuses": unexpected,
        "slowest_503_s": round(max(a.slowest_503_s for a in adds), 2),
        "slowest_answer_after_fault_s": round(max(a.slowest_after_fault_s for a in adds), 2),
        "s_kill_to_promotion": round(timeline["promoted"] - killed, 2),
        "s_kill_to_writes_again": max(again) if again else None,
        "writes_again_per_customer": writes_again,
        "devices": device_report,
        "devices_equal": all(d["equal"] for d in device_report.values()),
        "devices_that_saw_lost_changes": sum(
            bool(d["saw_lost_changes"]) for d in device_report.values()
        ),
        "devices_resnapshotted": sum(d["snapshots_after_kill"] > 0 for d in device_report.values()),
        "offline_devices": offline_report,
        "offline_devices_resnapshotted": sum(d["snapshots"] > 0 for d in offline_report.values()),
        "offline_devices_by_events": sum(
            d["snapshots"] == 0 and d["equal"] for d in offline_report.values()
        ),
    }
