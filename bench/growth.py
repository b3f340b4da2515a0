"""Cart growth: the same add-line mutation on carts already holding 1, 50 and 200 lines, and
Redis memory per cart line. The floor is the 1-line cart in the same run.

Carts are filled through the API (cartsync is started with ``CARTSYNC_MAX_LINES`` raised so
that a 200-line cart takes more); then one connection per cart adds new lines to its own cart,
closed loop, so each cart grows by ``adds`` lines per run (noted in the output).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tests.support.processes import service_env

from bench.harness import REPEATS, Cores, Report, processes
from bench.load import Closed, closed
from bench.mutation import Target, _ok
from bench.propagation import Tokens
from bench.stats import Latency, Spread, ratio
from cartsync.domain.principal import Owner, Role
from cartsync.storage.keys import OwnerKeys

NAME = "growth"
SIZES = (1, 50, 200)
TARGET = 1.2
"""The 200-line add may take at most this multiple of the 1-line add (issue 5)."""
FILL_CONNECTIONS = 32


@dataclass(frozen=True)
class Plan:
    name: str
    carts: int
    adds: int
    """Measured adds per cart per run."""
    repeats: int
    max_s: float


FULL = Plan(name="full", carts=32, adds=25, repeats=REPEATS, max_s=30.0)
QUICK = Plan(name="quick", carts=8, adds=20, repeats=REPEATS, max_s=15.0)
SMOKE = Plan(name="smoke", carts=2, adds=3, repeats=1, max_s=10.0)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}


async def _fill(target: Target, owners: list[str], lines: int) -> None:
    """Every owner's cart to ``lines`` lines, ``FILL_CONNECTIONS`` requests at a time."""
    work = [(o, n) for o in owners for n in range(lines)]
    failures = 0

    async def fill(worker: int, i: int) -> bool:
        nonlocal failures
        index = worker + i * FILL_CONNECTIONS
        if index >= len(work):
            return True
        owner, n = work[index]
        body = b'{"sku":"fill-%d"}' % n
        return await _ok(target.call("POST", "/v1/cart/lines", body, owner, 201))

    per_worker = -(-len(work) // FILL_CONNECTIONS)
    run = await closed(FILL_CONNECTIONS, per_worker * FILL_CONNECTIONS, 120.0, fill)
    if run.errors:
        raise RuntimeError(f"filling carts to {lines} lines: {run.errors} requests failed")


async def _memory(redis_url: str, owners: list[str]) -> dict[str, int]:
    """Bytes of these owners' keys by kind, by ``MEMORY USAGE ... SAMPLES 0``."""
    totals = {"lines": 0, "log": 0, "idempotency": 0, "other": 0}
    async with aioredis.Redis.from_url(redis_url) as r:
        for owner in owners:
            keys = OwnerKeys(Owner(Role.CUSTOMER, owner).id)
            kinds = {
                keys.lines: "lines",
                keys.line_index: "lines",
                keys.log: "log",
                keys.idempotency: "idempotency",
                keys.idempotency_expiry: "idempotency",
            }
            for key in keys.data_keys():
                used = int(await r.memory_usage(key, samples=0) or 0)
                totals[kinds.get(key, "other")] += used
    return totals


async def _used_memory(redis_url: str) -> int:
    async with aioredis.Redis.from_url(redis_url) as r:
        return int((await r.info("memory"))["used_memory"])


async def _measure(plan: Plan, url: str, redis_url: str) -> dict[str, Any]:
    target = Target("cartsync", url, 0, Tokens())
    # Unmeasured: every code path warm, on carts that are not measured.
    spare = [f"grow-warm-{uuid.uuid4().hex[:10]}" for _ in range(plan.carts)]
    await _fill(target, spare, plan.adds)
    carts: dict[int, list[str]] = {}
    memory: dict[int, dict[str, float]] = {}
    for size in SIZES:
        owners = [f"grow{size}-{uuid.uuid4().hex[:10]}" for _ in range(plan.carts)]
        before = await _used_memory(redis_url)
        await _fill(target, owners, size)
        after = await _used_memory(redis_url)
        carts[size] = owners
        kinds = await _memory(redis_url, owners)
        memory[size] = {
            "keys_bytes_per_cart": sum(kinds.values()) / plan.carts,
            **{f"{kind}_bytes_per_cart": used / plan.carts for kind, used in kinds.items()},
            "used_memory_delta_per_cart": (after - before) / plan.carts,
        }
    runs: dict[int, list[Closed]] = {size: [] for size in SIZES}

    def adder(owners: list[str], round_: int) -> Any:
        async def send(worker: int, i: int) -> bool:
            body = b'{"sku":"grow-%d-%d"}' % (round_, i)
            return await _ok(target.call("POST", "/v1/cart/lines", body, owners[worker], 201))

        return send

    for round_ in range(plan.repeats):
        for size in SIZES:
            send = adder(carts[size], round_)
            run = await closed(plan.carts, plan.carts * plan.adds, plan.max_s, send)
            if run.errors:
                raise RuntimeError(f"adds to {size}-line carts: {run.errors} failed")
            runs[size].append(run)
    await target.http.__aexit__()
    return {"runs": runs, "memory": memory}


def run(plan_name: str = "full") -> Report:
    plan = PLANS[plan_name]
    cores = Cores.detect()
    max_lines = str(max(SIZES) + plan.adds * (plan.repeats + 1) + 10)
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        env = service_env(server.url, Path(tmp) / "cartsync", CARTSYNC_MAX_LINES=max_lines)
        cartsync = procs.service("cartsync", env)
        pinned = [*procs.notes, cores.pin_self()]
        measured = asyncio.run(_measure(plan, cartsync.url, server.url))
    return _report(plan, pinned, measured)


def _report(plan: Plan, pinned: list[str], measured: dict[str, Any]) -> Report:
    runs: dict[int, list[Closed]] = measured["runs"]
    memory: dict[int, dict[str, float]] = measured["memory"]
    lat = {size: [Latency.of(r.samples_ns) for r in runs[size]] for size in SIZES}
    base50 = Spread.of([x.p50_ms for x in lat[SIZES[0]]]).median
    base99 = Spread.of([x.p99_ms for x in lat[SIZES[0]]]).median
    base_rate = Spread.of([r.per_s for r in runs[SIZES[0]]]).median
    headers = [
        "lines in cart",
        "runs x adds",
        "adds/s",
        "p50 ms",
        "p99 ms",
        "owner keys KiB/cart",
        "INFO used_memory delta KiB/cart",
    ]
    rows: list[list[str]] = []
    for size in SIZES:
        p50 = Spread.of([x.p50_ms for x in lat[size]])
        p99 = Spread.of([x.p99_ms for x in lat[size]])
        rate = Spread.of([r.per_s for r in runs[size]])
        rows.append(
            [
                f"{size} (+{plan.adds * plan.repeats} over the runs)",
                f"{len(runs[size])} x {min(len(r.samples_ns) for r in runs[size])}",
                f"{rate.median:.0f} ({rate.low:.0f}-{rate.high:.0f}) = "
                f"{rate.median / base_rate:.2f}x",
                f"{p50.cell()} = **{ratio(p50.median, base50)}**",
                f"{p99.cell()} = {ratio(p99.median, base99)}",
                f"{memory[size]['keys_bytes_per_cart'] / 1024:.1f}",
                f"{memory[size]['used_memory_delta_per_cart'] / 1024:.1f}",
            ]
        )
    big, small = SIZES[-1], SIZES[0]
    p50_big = Spread.of([x.p50_ms for x in lat[big]]).median
    share = p50_big / base50
    verdict = (
        f"add on a {big}-line cart: p50 {p50_big:.2f} ms = {share:.2f}x the {small}-line cart's "
        f"{base50:.2f} ms; target <= {TARGET}x: {'met' if share <= TARGET else 'NOT met'}"
    )
    keys_per_line = (memory[big]["keys_bytes_per_cart"] - memory[small]["keys_bytes_per_cart"]) / (
        big - small
    )
    info_per_line = (
        memory[big]["used_memory_delta_per_cart"] - memory[small]["used_memory_delta_per_cart"]
    ) / (big - small)

    def per_line(kind: str) -> float:
        return (memory[big][f"{kind}_bytes_per_cart"] - memory[small][f"{kind}_bytes_per_cart"]) / (
            big - small
        )

    memory_note = (
        f"Redis memory per cart line ({small} → {big} lines, filled by one POST each): "
        f"{keys_per_line:.0f} B by MEMORY USAGE of the owner's keys (line + index "
        f"{per_line('lines'):.0f} B, event log {per_line('log'):.0f} B, idempotency record "
        f"{per_line('idempotency'):.0f} B, other {per_line('other'):.0f} B), "
        f"{info_per_line:.0f} B by INFO used_memory delta"
    )
    notes = [
        f"{plan.carts} carts per size, one connection per cart (closed loop), {plan.adds} new "
        f"lines per cart per run, {plan.repeats} runs; carts grow by that much over the runs; "
        "cells: median run (lowest-highest run), and a multiple of the 1-line cart (the floor)",
        *(f"pinned: {line}" for line in pinned),
        verdict,
        memory_note,
    ]
    data = {
        "plan": vars(plan) | {"sizes": list(SIZES), "target": TARGET},
        "pinned": pinned,
        "verdict": verdict,
        "memory": {str(k): v for k, v in memory.items()},
        "bytes_per_line": {
            "memory_usage": keys_per_line,
            "used_memory": info_per_line,
            **{kind: per_line(kind) for kind in ("lines", "log", "idempotency", "other")},
        },
        "series": [
            {
                "lines": size,
                "runs": [
                    {"per_s": r.per_s, "errors": r.errors, **vars(x)}
                    for r, x in zip(runs[size], lat[size], strict=True)
                ],
            }
            for size in SIZES
        ],
    }
    return Report(
        NAME, "Cart growth: add-line on 1, 50 and 200-line carts", headers, rows, notes, data
    )
