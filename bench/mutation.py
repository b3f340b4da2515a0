"""Mutation throughput: ``POST /v1/cart/lines`` and ``PATCH /v1/cart/lines/{id}`` at 32
concurrent keep-alive connections to one cartsync instance, beside its floor, a minimal
Starlette-on-Hypercorn app (bench/floors/minimal_app.py) that decodes the same body with msgspec
and runs one small Lua script on one hash-tagged owner. Closed loop: each connection sends its
next request when the last answer is in, so req/s is what the server sustains.

``cartsync serve --workers 2`` runs beside them: two processes on one port, spread over both
cores (where the one-worker instance and the floor have core 0 alone), sharing core 1 with the
load generator; what a second worker buys on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tests.support.processes import free_port, service_env

from bench import floors
from bench.harness import (
    REPEATS,
    START_CORES,
    Command,
    Cores,
    Processes,
    Report,
    pin_tree,
    processes,
    tree_cpu_s,
)
from bench.http1 import Http1Client, ProtocolError
from bench.load import Closed, closed
from bench.propagation import Tokens
from bench.stats import Latency, Spread, ratio

NAME = "mutation"
CONNECTIONS = 32
LINES_PER_CART = 150
"""New lines per cart before a connection moves on to a fresh customer (the cap is 200)."""
TARGET = 0.9
"""cartsync's req/s as a fraction of the floor's that issue 5 asks for."""
IO_TIMEOUT_S = 10.0

Send = Callable[[int, int], Coroutine[Any, Any, bool]]


@dataclass(frozen=True)
class Plan:
    name: str
    max_s: float
    max_count: int
    repeats: int
    warmup_s: float


FULL = Plan(name="full", max_s=10.0, max_count=200_000, repeats=REPEATS, warmup_s=2.0)
QUICK = Plan(name="quick", max_s=1.5, max_count=50_000, repeats=REPEATS, warmup_s=0.5)
SMOKE = Plan(name="smoke", max_s=0.3, max_count=2_000, repeats=1, warmup_s=0.1)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}


class Target:
    """One server under load: its address and how an owner is named in a request."""

    def __init__(self, label: str, url: str, pid: int, tokens: Tokens | None) -> None:
        self.label = label
        self.pid = pid
        host, port = url.removeprefix("http://").split(":")
        self.http = Http1Client(
            host, int(port), max_connections=CONNECTIONS, timeout_s=IO_TIMEOUT_S
        )
        self._tokens = tokens
        self._headers: dict[str, dict[str, str]] = {}

    def headers(self, owner: str) -> dict[str, str]:
        found = self._headers.get(owner)
        if found is None:
            found = {"Content-Type": "application/json"}
            if self._tokens is None:
                found["X-Owner"] = owner
            else:
                found["Authorization"] = f"Bearer {self._tokens.customer(owner)}"
            self._headers[owner] = found
        return found

    async def call(self, method: str, path: str, body: bytes, owner: str, want: int) -> bytes:
        response = await self.http.request(method, path, body, self.headers(owner))
        if response.status != want:
            raise ProtocolError(f"{method} {path}: {response.status} {response.body[:200]!r}")
        return response.body

    def add_line(self) -> Send:
        prefix = f"mut-{uuid.uuid4().hex[:10]}"

        async def send(worker: int, i: int) -> bool:
            owner = f"{prefix}-{worker}-{i // LINES_PER_CART}"
            body = b'{"sku":"sku-%d"}' % i
            return await _ok(self.call("POST", "/v1/cart/lines", body, owner, 201))

        return send

    async def patch_qty(self) -> Send:
        prefix = f"mut-{uuid.uuid4().hex[:10]}"
        owners = [f"{prefix}-{w}" for w in range(CONNECTIONS)]
        paths: list[str] = []
        for owner in owners:
            answer = await self.call("POST", "/v1/cart/lines", b'{"sku":"patched"}', owner, 201)
            paths.append(f"/v1/cart/lines/{json.loads(answer)['line']['id']}")

        async def send(worker: int, i: int) -> bool:
            body = b'{"qty":%d}' % (1 + i % 9)
            return await _ok(self.call("PATCH", paths[worker], body, owners[worker], 200))

        return send


async def _ok(call: Coroutine[Any, Any, bytes]) -> bool:
    try:
        await call
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
        return False
    return True


OPS = ("add line (POST /v1/cart/lines)", "patch qty (PATCH /v1/cart/lines/{id})")


@dataclass(frozen=True)
class Cost:
    """Server CPU and Redis script time per completed request in one run."""

    server_cpu_ms: float
    redis_script_us: float


SCRIPT_COMMANDS = ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval")
"""cartsync calls a Function library on Redis 7+ (FCALL) and EVALSHA on 6.2; the floor EVALSHA."""


async def _script_usec(redis: aioredis.Redis) -> tuple[int, int]:
    """Script calls and their µs so far, whichever way the server under load calls its Lua."""
    stats = await redis.info("commandstats")
    calls = usec = 0
    for name in SCRIPT_COMMANDS:
        calls += int(stats.get(name, {}).get("calls", 0))
        usec += int(stats.get(name, {}).get("usec", 0))
    return calls, usec


async def _costed(
    target: Target, redis: aioredis.Redis, plan: Plan, send: Send
) -> tuple[Closed, Cost]:
    cpu_before = tree_cpu_s(target.pid)
    calls_before, usec_before = await _script_usec(redis)
    run = await closed(CONNECTIONS, plan.max_count, plan.max_s, send)
    cpu = tree_cpu_s(target.pid) - cpu_before
    calls_after, usec_after = await _script_usec(redis)
    done = max(len(run.samples_ns), 1)
    script_us = (usec_after - usec_before) / max(calls_after - calls_before, 1)
    return run, Cost(server_cpu_ms=cpu * 1000 / done, redis_script_us=script_us)


async def _measure(
    plan: Plan, redis_url: str, servers: dict[str, tuple[str, int]]
) -> tuple[dict[tuple[str, str], list[Closed]], dict[tuple[str, str], list[Cost]]]:
    tokens = Tokens()
    targets = [
        Target(label, url, pid, None if label == "floor" else tokens)
        for label, (url, pid) in servers.items()
    ]
    results: dict[tuple[str, str], list[Closed]] = {
        (op, t.label): [] for op in OPS for t in targets
    }
    costs: dict[tuple[str, str], list[Cost]] = {(op, t.label): [] for op in OPS for t in targets}
    for target in targets:  # unmeasured: scripts loaded, connections opened, code paths warm
        await closed(CONNECTIONS, 100_000, plan.warmup_s, target.add_line())
        await closed(CONNECTIONS, 100_000, plan.warmup_s, await target.patch_qty())
    async with aioredis.Redis.from_url(redis_url) as redis:
        for _ in range(plan.repeats):
            for op in OPS:  # floor and cartsync side by side, so noise hits both alike
                for target in targets:
                    send = target.add_line() if op == OPS[0] else await target.patch_qty()
                    run, cost = await _costed(target, redis, plan, send)
                    if run.errors:
                        raise RuntimeError(f"{target.label} {op}: {run.errors} requests failed")
                    results[op, target.label].append(run)
                    costs[op, target.label].append(cost)
    for target in targets:
        await target.http.__aexit__()
    return results, costs


def run(plan_name: str = "full") -> Report:
    plan = PLANS[plan_name]
    cores = Cores.detect()
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        cartsync = procs.service("cartsync", service_env(server.url, Path(tmp) / "cartsync"))
        floor = floors.minimal_app(procs, server.url)
        two = _two_workers(procs, server.url, Path(tmp) / "two-workers")
        pinned = [*procs.notes, cores.pin_self()]
        assert two.proc is not None
        if START_CORES is not None and cores.servers is not None:
            threads = pin_tree(two.proc.pid, START_CORES)
            pinned.append(
                f"{WORKERS_2} (pid {two.proc.pid}, {threads} threads): re-pinned to "
                f"cpu {','.join(map(str, sorted(START_CORES)))}"
            )
        assert cartsync.proc is not None
        assert floor.proc is not None
        servers = {
            "floor": (floor.url, floor.proc.pid),
            "cartsync": (cartsync.url, cartsync.proc.pid),
            WORKERS_2: (two.url, two.proc.pid),
        }
        results, costs = asyncio.run(_measure(plan, server.url, servers))
    return _report(plan, pinned, results, costs)


WORKERS_2 = "cartsync, 2 workers"


def _two_workers(procs: Processes, redis_url: str, data_dir: Path) -> Command:
    """``cartsync serve --workers 2`` on the benchmark's Redis, ready once /readyz answers."""
    env = service_env(redis_url, data_dir, CARTSYNC_METRICS_PORT=str(free_port()))
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "cartsync", "serve", "--workers", "2", "--port", "{port}"]
    return procs.command(WORKERS_2, args, env, "/readyz")


def _report(
    plan: Plan,
    pinned: list[str],
    results: dict[tuple[str, str], list[Closed]],
    costs: dict[tuple[str, str], list[Cost]],
) -> Report:
    headers = [
        "operation",
        "server",
        "runs x requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "server CPU ms/req",
        "Redis script µs/call",
    ]
    rows: list[list[str]] = []
    verdicts: list[str] = []
    series: list[dict[str, Any]] = []
    for op in OPS:
        floor_runs = results[op, "floor"]
        floor_rate = Spread.of([r.per_s for r in floor_runs])
        floor_lat = [Latency.of(r.samples_ns) for r in floor_runs]
        one_worker = Spread.of([r.per_s for r in results[op, "cartsync"]]).median
        for label in ("floor", "cartsync", WORKERS_2):
            runs = results[op, label]
            rate = Spread.of([r.per_s for r in runs])
            lat = [Latency.of(r.samples_ns) for r in runs]
            p50 = Spread.of([x.p50_ms for x in lat])
            p99 = Spread.of([x.p99_ms for x in lat])
            cells = [f"{rate.median:.0f} ({rate.low:.0f}-{rate.high:.0f})", p50.cell(), p99.cell()]
            if label == WORKERS_2:
                verdicts.append(
                    f"{op}: 2 workers {rate.median:.0f} req/s = {rate.median / one_worker:.2f}x "
                    f"1 worker's {one_worker:.0f} req/s on this 2-core machine"
                )
            if label == "cartsync":
                f50 = Spread.of([x.p50_ms for x in floor_lat]).median
                f99 = Spread.of([x.p99_ms for x in floor_lat]).median
                cells[0] += f" = **{rate.median / floor_rate.median:.2f}x**"
                cells[1] += f" = {ratio(p50.median, f50)}"
                cells[2] += f" = {ratio(p99.median, f99)}"
                share = rate.median / floor_rate.median
                met = "met" if share >= TARGET else "NOT met"
                verdicts.append(
                    f"{op}: cartsync {rate.median:.0f} req/s = {share:.2f}x the floor's "
                    f"{floor_rate.median:.0f} req/s; target >= {TARGET}x: {met}"
                )
            cpu = Spread.of([c.server_cpu_ms for c in costs[op, label]])
            script = Spread.of([c.redis_script_us for c in costs[op, label]])
            cells += [f"{cpu.median:.2f}", f"{script.median:.0f}"]
            name = "floor: Starlette + msgspec + 1 Lua script" if label == "floor" else label
            n = min(len(r.samples_ns) for r in runs)
            rows.append([op, name, f"{len(runs)} x ≥{n}", *cells])
            series.append(
                {
                    "operation": op,
                    "server": label,
                    "runs": [
                        {
                            "per_s": r.per_s,
                            "span_s": r.span_s,
                            "errors": r.errors,
                            **vars(x),
                            **vars(c),
                        }
                        for r, x, c in zip(runs, lat, costs[op, label], strict=True)
                    ],
                }
            )
    client = "wrk is on PATH but not used" if shutil.which("wrk") else "wrk is not on PATH"
    notes = [
        f"{CONNECTIONS} keep-alive connections, closed loop, {plan.max_s:.0f} s per run, "
        f"{plan.repeats} runs per server and operation, floor and cartsync interleaved; "
        f"client: bench/http1.py ({client}); cells: median run (lowest-highest run)",
        "1 cartsync instance (`python -m cartsync serve`, one process, one Hypercorn worker); "
        "the floor is one `hypercorn --workers 0` process; both on the same redis-server; "
        f"{WORKERS_2}: `cartsync serve --workers 2` on both cores (server CPU summed over its "
        "processes), sharing core 1 with the load generator",
        *(f"pinned: {line}" for line in pinned),
        *verdicts,
    ]
    data = {
        "plan": vars(plan) | {"connections": CONNECTIONS, "target": TARGET},
        "pinned": pinned,
        "verdicts": verdicts,
        "series": series,
    }
    title = f"Mutation throughput at {CONNECTIONS} connections (1 instance) vs a minimal app"
    return Report(NAME, title, headers, rows, notes, data)
