"""Back-office events (docs/events.md): what one worker delivers, how late, and what the outbox
costs a mutation.

1. Delivery throughput: N events wait in the outbox (written by real mutations), then one
   ``cartsync worker`` starts and delivers them to a loopback receiver (a bare asyncio HTTP/1.1
   server in this process that answers 204). Its floor: the same number of signed-size POSTs
   sent straight to the same receiver by an httpx client 8 at a time, with no Redis at all.
2. Delivery lag at 200 mutations/s: wishlist item adds (each one event) paced open-loop; lag is
   the receiver's clock minus the event's ``occurred_at`` (one machine, one clock).
3. Mutation throughput with events on vs off, in the same run: two services on one Redis, one
   with ``CARTSYNC_EVENTS=true``, closed loop as in bench/mutation.py, no worker running (the
   write path's cost alone). Target: at most 5 % slower.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from tests.support.processes import service_env

from bench import mutation
from bench.harness import REPEATS, Cores, Report, processes
from bench.load import closed, paced
from bench.mutation import CONNECTIONS, Target, _costed, _ok
from bench.propagation import Tokens
from bench.stats import Spread

NAME = "events"
SECRET = "whsec_" + base64.b64encode(b"cartsync-bench-webhook-key-0123456789").decode()
TARGET_SLOWDOWN = 0.05


@dataclass(frozen=True)
class Plan:
    name: str
    backlog: int
    lag_rate: float
    lag_s: float
    mutation_s: float
    repeats: int


FULL = Plan("full", backlog=5000, lag_rate=200, lag_s=15, mutation_s=8, repeats=REPEATS)
QUICK = Plan("quick", backlog=1500, lag_rate=200, lag_s=5, mutation_s=2, repeats=REPEATS)
SMOKE = Plan("smoke", backlog=40, lag_rate=50, lag_s=0.5, mutation_s=0.3, repeats=1)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}


@dataclass
class Receiver:
    """A minimal HTTP/1.1 endpoint: reads each POST, notes when it came, answers 204."""

    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    port: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                self.arrivals.append((time.time(), body))
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def stop(self, server: asyncio.Server) -> None:
        """Close the listener and every open connection, so no handler outlives the loop."""
        server.close()
        for writer in list(self.writers):
            writer.close()
        await server.wait_closed()
        await asyncio.sleep(0.1)  # the handlers see their connection end and return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def _wait_for(receiver: Receiver, count: int, timeout_s: float) -> float:
    """Seconds until the receiver holds ``count`` arrivals (bounded)."""
    begin = time.perf_counter()
    while len(receiver.arrivals) < count:
        if time.perf_counter() - begin > timeout_s:
            raise RuntimeError(f"only {len(receiver.arrivals)} of {count} events in {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.perf_counter() - begin


async def _fill(url: str, tokens: Tokens, count: int) -> None:
    """``count`` events in the outbox: wishlist item adds by 50 customers."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        prefix = uuid.uuid4().hex[:8]

        async def one(c: int) -> None:
            headers = {"Authorization": f"Bearer {tokens.customer(f'ev-{prefix}-{c}')}"}
            for i in range(c, count, 50):
                r = await http.post(
                    "/v1/wishlists/default/items", headers=headers, json={"sku": f"S-{i}"}
                )
                if r.status_code != 201:
                    raise RuntimeError(f"fill: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(one(c) for c in range(50)))


async def _floor(receiver: Receiver, count: int, body: bytes) -> float:
    """Events per second of plain POSTs to the receiver at concurrency 8."""
    before = len(receiver.arrivals)
    headers = {"content-type": "application/json", "webhook-id": "x", "webhook-signature": "v1,x"}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        begin = time.perf_counter()

        async def loop(w: int) -> None:
            for _ in range(w, count, 8):
                await http.post(receiver.url, content=body, headers=headers)

        await asyncio.gather(*(loop(w) for w in range(8)))
        span = time.perf_counter() - begin
    assert len(receiver.arrivals) - before == count
    return count / span


def _lags_ms(arrivals: list[tuple[float, bytes]]) -> list[float]:
    out = []
    for at, body in arrivals:
        occurred = json.loads(body)["occurred_at"]
        out.append(
            (at - datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()) * 1000
        )
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(plan: Plan, tmp: Path, procs: Any, redis_url: str) -> dict[str, Any]:
    tokens = Tokens()
    receiver = Receiver()
    server = await receiver.start()
    hooks = tmp / "webhooks.json"
    hooks.write_text(
        json.dumps(
            {
                "endpoints": [
                    {"name": "bench", "url": receiver.url, "secret": SECRET, "max_concurrency": 32}
                ]
            }
        )
    )
    events = {
        "CARTSYNC_EVENTS": "true",
        "CARTSYNC_WORKER": "off",
        "CARTSYNC_WEBHOOKS_FILE": str(hooks),
        "CARTSYNC_WORKER_POLL_SECONDS": "0.05",
    }
    on = procs.service("cartsync (events on)", service_env(redis_url, tmp / "on", **events))
    off = procs.service(
        "cartsync (events off)",
        service_env(redis_url, tmp / "off", CARTSYNC_EVENTS="false", CARTSYNC_WORKER="off"),
    )
    worker_env = service_env(redis_url, tmp / "worker", **events)
    worker_env["CARTSYNC_WORKER_METRICS_PORT"] = "{port}"
    worker_args = [sys.executable, "-m", "cartsync", "worker"]
    out: dict[str, Any] = {"throughput": [], "floor": [], "lag": [], "mutation": {}}
    out["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    for _ in range(plan.repeats):
        receiver.arrivals.clear()
        await _fill(on.url, tokens, plan.backlog)
        begin = time.perf_counter()
        worker = procs.command("cartsync worker", worker_args, worker_env, "/healthz")
        await _wait_for(receiver, plan.backlog, 300)
        span = time.perf_counter() - begin
        out["throughput"].append(plan.backlog / span)
        worker.stop()
        body = receiver.arrivals[0][1]
        out["floor"].append(await _floor(receiver, plan.backlog, body))

    worker = procs.command("cartsync worker", worker_args, worker_env, "/healthz")
    lagged = Target("on", on.url, on.proc.pid, tokens)
    for _ in range(plan.repeats):
        receiver.arrivals.clear()
        failed = 0

        async def add(i: int, prefix: str = uuid.uuid4().hex[:8]) -> None:
            nonlocal failed
            body = b'{"sku":"L-%d"}' % i
            owner = f"lag-{prefix}-{i % 200}"
            ok = await _ok(lagged.call("POST", "/v1/wishlists/default/items", body, owner, 201))
            failed += not ok

        pace = await paced(plan.lag_rate, int(plan.lag_rate * plan.lag_s), plan.lag_s, add)
        await _wait_for(receiver, pace.started - failed, 60)
        lags = _lags_ms(receiver.arrivals)
        out["lag"].append(
            {
                "p50_ms": _pct(lags, 0.5),
                "p99_ms": _pct(lags, 0.99),
                "rate": pace.achieved_per_s,
                "failed": failed,
            }
        )
    await lagged.http.__aexit__()
    # The write path alone: no worker competes for the servers' core while mutations run.
    worker.stop()

    # The same closed loop against both services, interleaved, so noise hits both alike.
    for op in ("add line", "add wishlist item"):
        for label in ("off", "on"):
            out["mutation"][op, label] = []
    targets = {
        "on": Target("on", on.url, on.proc.pid, tokens),
        "off": Target("off", off.url, off.proc.pid, tokens),
    }
    for target in targets.values():
        await closed(CONNECTIONS, 100_000, 1.0, target.add_line())
    async with aioredis.Redis.from_url(redis_url) as redis:
        for _ in range(plan.repeats):
            for label, target in targets.items():
                for op, send in (
                    ("add line", target.add_line()),
                    ("add wishlist item", _wish(target)),
                ):
                    run, cost = await _costed(
                        target,
                        redis,
                        mutation.Plan("events", plan.mutation_s, 500_000, 1, 0.0),
                        send,
                    )
                    out["mutation"][op, label].append({"per_s": run.per_s, **vars(cost)})
    for target in targets.values():
        await target.http.__aexit__()
    await receiver.stop(server)
    return out


def _wish(target: Target) -> Any:
    prefix = f"wish-{uuid.uuid4().hex[:10]}"

    async def send(worker: int, i: int) -> bool:
        owner = f"{prefix}-{worker}-{i // 90}"  # a wishlist holds 100 items
        body = b'{"sku":"sku-%d"}' % i
        return await _ok(target.call("POST", "/v1/wishlists/default/items", body, owner, 201))

    return send


def run(plan_name: str = "full") -> Report:
    plan = PLANS[plan_name]
    cores = Cores.detect()
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        pinned = [*procs.notes]
        out = asyncio.run(_measure(plan, Path(tmp), procs, server.url))
        pinned = [*procs.notes, cores.pin_self()]
    return _report(plan, pinned, out)


def _report(plan: Plan, pinned: list[str], out: dict[str, Any]) -> Report:
    headers = ["measure", "cartsync", "floor / reference", "ratio"]
    rows: list[list[str]] = []
    verdicts: list[str] = []
    rate = Spread.of(out["throughput"])
    floor = Spread.of(out["floor"])
    rows.append(
        [
            f"events/s one worker delivers ({plan.backlog} queued, 1 endpoint)",
            f"{rate.median:.0f} ({rate.low:.0f}-{rate.high:.0f})",
            f"{floor.median:.0f} ({floor.low:.0f}-{floor.high:.0f}) plain httpx POSTs, 8 at a time",
            f"**{rate.median / floor.median:.2f}x**",
        ]
    )
    p50 = Spread.of([x["p50_ms"] for x in out["lag"]])
    p99 = Spread.of([x["p99_ms"] for x in out["lag"]])
    achieved = statistics.median(x["rate"] for x in out["lag"])
    rows.append([f"delivery lag p50 at {plan.lag_rate:.0f} mutations/s (ms)", p50.cell(), "", ""])
    rows.append([f"delivery lag p99 at {achieved:.0f} mutations/s (ms)", p99.cell(), "", ""])
    for op in ("add line", "add wishlist item"):
        runs = {label: out["mutation"][op, label] for label in ("on", "off")}
        per_s = {k: Spread.of([r["per_s"] for r in v]) for k, v in runs.items()}
        cpu = {k: Spread.of([r["server_cpu_ms"] for r in v]) for k, v in runs.items()}
        script = {k: Spread.of([r["redis_script_us"] for r in v]) for k, v in runs.items()}
        share = per_s["on"].median / per_s["off"].median
        cost = cpu["on"].median / cpu["off"].median
        for what, on, off, ratio_ in (
            ("req/s", per_s["on"], per_s["off"], share),
            ("server CPU ms/req", cpu["on"], cpu["off"], cost),
            (
                "Redis script µs/call",
                script["on"],
                script["off"],
                script["on"].median / script["off"].median,
            ),
        ):
            digits = 0 if what != "server CPU ms/req" else 2
            rows.append(
                [
                    f"{op}, {what}, events on (vs off)",
                    f"{on.median:.{digits}f} ({on.low:.{digits}f}-{on.high:.{digits}f})",
                    f"{off.median:.{digits}f} ({off.low:.{digits}f}-{off.high:.{digits}f})"
                    " events off",
                    f"**{ratio_:.2f}x**",
                ]
            )
        met = "met" if share >= 1 - TARGET_SLOWDOWN else "NOT met"
        verdicts.append(
            f"{op}: {100 * (1 - share):+.1f} % slower with events on (server CPU per request "
            f"{100 * (cost - 1):+.1f} %); target <= {100 * TARGET_SLOWDOWN:.0f} % slower: {met}"
        )
    notes = [
        f"{plan.repeats} runs each; cells: median run (lowest-highest run); load average "
        f"before the run: {out['load']}",
        "delivery: one endpoint with max_concurrency 32; the floor sends from the load "
        "generator's core, the worker shares the servers' core with Redis and both services",
        "events on vs off: the same closed loop (bench/mutation.py, "
        f"{CONNECTIONS} connections) against both services in turn, no worker running",
        "one redis-server, two `cartsync serve` (events on, off), `cartsync worker` processes; "
        "the receiver and the load generator are this process",
        *(f"pinned: {line}" for line in pinned),
        *verdicts,
    ]
    data = {
        "plan": vars(plan),
        "throughput_per_s": out["throughput"],
        "floor_per_s": out["floor"],
        "lag": out["lag"],
        "mutation": {f"{op} / events {label}": v for (op, label), v in out["mutation"].items()},
        "verdicts": verdicts,
    }
    return Report(
        NAME, "Back-office events: delivery, lag, and the outbox's cost", headers, rows, notes, data
    )
