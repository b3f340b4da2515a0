"""Redis time per mutation script, load-independent of HTTP: the floor's script beside cartsync's
add-line and patch-qty, each called through the store with nothing else running on its Redis.

    .venv/bin/python -m bench.script_cost [--calls 2000] [--runs 5] [--redis-url URL]

Each run resets ``INFO commandstats`` and makes ``--calls`` sequential calls of one kind; a cell
is the median (lowest-highest) of the runs' ``usec_per_call``. cartsync runs both ways it can:
as the Function library (``FCALL``, Redis 7+) and as the EVAL script it falls back to on Redis 6.2
(``EVALSHA``). Kinds alternate within each run, so noise hits them alike. Without
``--redis-url`` it starts its own redis-server on a free loopback port; with one (e.g. a
redis-server under ``valgrind --tool=callgrind``) it uses that Redis and resets its statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from tests.support.processes import RedisProcess

from bench.floors.minimal_app import SCRIPT as FLOOR_SCRIPT
from cartsync.domain.limits import Limits
from cartsync.domain.model import Actor, line_key
from cartsync.domain.principal import Owner, Role
from cartsync.storage.store import CartStore, WriteContext

LINES_PER_CART = 150
"""New lines per cart before add-line moves on to a fresh customer, as in bench/mutation.py."""
MAX_CALLS = 20_000
MAX_RUNS = 20

Call = Callable[[int], Awaitable[object]]


def _store(redis: aioredis.Redis, *, functions: bool) -> CartStore:
    return CartStore(
        redis,
        limits=Limits(),
        currency="EUR",
        event_log_max=1000,
        idempotency_ttl_s=86_400,
        guest_ttl_s=86_400,
        customer_ttl_s=90 * 86_400,
        functions=functions,
    )


def _floor(redis: aioredis.Redis) -> Call:
    script = redis.register_script(FLOOR_SCRIPT)
    prefix = uuid.uuid4().hex[:8]

    async def call(i: int) -> object:
        owner = f"{prefix}-{i // LINES_PER_CART}"
        keys = [f"floor:{{{owner}}}:meta", f"floor:{{{owner}}}:lines", f"floor:{{{owner}}}:log"]
        return await script(keys=keys, args=[f"L-{i}", b'{"id":"L-%d","sku":"s","qty":1}' % i])

    return call


def _add_line(store: CartStore) -> Call:
    prefix = f"cost-{uuid.uuid4().hex[:8]}"

    async def call(i: int) -> object:
        owner = Owner(Role.CUSTOMER, f"{prefix}-{i // LINES_PER_CART}")
        sku = f"sku-{i}"
        payload = {"sku": sku, "qty": 1, "attrs": {}, "key": line_key(sku, {})}
        ctx = WriteContext(Actor(role="customer", id=owner.subject, device="bench"))
        return await store.mutate(owner, "line_add", payload, ctx)

    return call


async def _patch_qty(store: CartStore) -> Call:
    owner = Owner(Role.CUSTOMER, f"cost-{uuid.uuid4().hex[:8]}")
    ctx = WriteContext(Actor(role="customer", id=owner.subject, device="bench"))
    payload = {"sku": "patched", "qty": 1, "attrs": {}, "key": line_key("patched", {})}
    added = await store.mutate(owner, "line_add", payload, ctx)
    line_id = (await store.snapshot(owner)).cart.lines[0].id
    assert added.status == 201

    async def call(i: int) -> object:
        return await store.mutate(owner, "line_update", {"line_id": line_id, "qty": 1 + i % 9}, ctx)

    return call


async def _usec_per_call(redis: aioredis.Redis, command: str) -> float:
    stats = await redis.info("commandstats")
    return float(stats.get(f"cmdstat_{command}", {}).get("usec_per_call", 0.0))


async def measure(url: str, calls: int, runs: int) -> dict[str, list[float]]:
    async with aioredis.Redis.from_url(url) as redis:
        fcall, evalsha = _store(redis, functions=True), _store(redis, functions=False)
        kinds: dict[str, tuple[str, Call]] = {
            "floor: HINCRBY + HSET + XADD": ("evalsha", _floor(redis)),
            "add line, FCALL": ("fcall", _add_line(fcall)),
            "add line, EVALSHA": ("evalsha", _add_line(evalsha)),
            "patch qty, FCALL": ("fcall", await _patch_qty(fcall)),
            "patch qty, EVALSHA": ("evalsha", await _patch_qty(evalsha)),
        }
        for _, call in kinds.values():  # unmeasured: scripts loaded, library loaded
            await call(0)
        found: dict[str, list[float]] = {name: [] for name in kinds}
        done = {name: 1 for name in kinds}
        for _ in range(runs):
            for name, (command, call) in kinds.items():
                await redis.config_resetstat()
                for _ in range(calls):
                    await call(done[name])
                    done[name] += 1
                found[name].append(await _usec_per_call(redis, command))
        return found


def report(found: dict[str, list[float]], calls: int, runs: int) -> str:
    floor = statistics.median(found["floor: HINCRBY + HSET + XADD"])
    rows = [
        f"Redis µs per script call (INFO commandstats usec_per_call), {runs} runs x {calls} calls",
        "| script | µs/call: median (lowest-highest) | x the floor's |",
        "|---|---|---|",
    ]
    for name, values in found.items():
        median = statistics.median(values)
        rows.append(
            f"| {name} | {median:.1f} ({min(values):.1f}-{max(values):.1f}) "
            f"| {median / floor:.2f}x |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.script_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", help="an existing Redis to use (its stats are reset)")
    opts = parser.parse_args()
    if not (1 <= opts.calls <= MAX_CALLS and 1 <= opts.runs <= MAX_RUNS):
        parser.error(f"--calls must be 1..{MAX_CALLS} and --runs 1..{MAX_RUNS}")
    calls, runs = opts.calls, opts.runs
    if opts.redis_url:
        found = asyncio.run(measure(opts.redis_url, calls, runs))
    else:
        with tempfile.TemporaryDirectory(prefix="cartsync-script-cost-") as tmp:
            server = RedisProcess(Path(tmp) / "redis").start()
            try:
                found = asyncio.run(measure(server.url, calls, runs))
            finally:
                server.stop()
    print(report(found, calls, runs))


if __name__ == "__main__":
    main()
