"""CPU per mutation inside the app: cartsync's ASGI app and the floor's (bench/floors/
minimal_app.py) called in-process, without Hypercorn, on one real redis-server.

    .venv/bin/python -m bench.request_cost [--count N] [--profile]

Both apps get the same requests as in bench/mutation.py (``POST /v1/cart/lines``, 150 new
lines per customer, and ``PATCH /v1/cart/lines/{id}`` on one line per connection), 32 at a
time, with cartsync configured as that benchmark starts it (HS256 tokens, its rate limit,
metrics and the JSON access log, written to a file). What is printed is this process's CPU
time (``time.process_time``) per request, which leaves out the server's HTTP parsing and
socket work, both alike for the two apps: what cartsync spends beyond the floor is its own.
Redis runs in its own process, so its time is not counted either. Each run is cut in slices
the two apps take in turns, and repeated; each cell is the median run (the ratio: the median
of the runs' ratios, steadier than either figure on a busy machine). ``--profile`` adds
cProfile's top functions of one more cartsync run of each operation.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from tests.support.processes import RedisProcess, service_env

from bench.propagation import Tokens

CONNECTIONS = 32
LINES_PER_CART = 150
MAX_S = 20.0
"""Each run stops after this long, whatever its count."""
ASGIApp = Callable[..., Coroutine[Any, Any, None]]
Send = Callable[[int, int], Awaitable[bytes]]
Headers = list[tuple[bytes, bytes]]


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""


async def call(app: ASGIApp, method: str, path: str, headers: Headers, body: bytes) -> Response:
    """One HTTP request through the app, with the scope Hypercorn would give it."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"spec_version": "2.1", "version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }
    sent = False
    out = Response()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more comes: as a client that stays
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    await app(scope, receive, send)
    return out


class Lifespan:
    """Runs an ASGI app's lifespan: started on enter, shut down on exit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await asyncio.wait_for(self._outbox.get(), 30)
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan start-up failed: {answer}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._outbox.get(), 30)
        await asyncio.wait_for(self._task, 30)


class Target:
    """One app and how an owner is named in its requests."""

    def __init__(self, label: str, app: ASGIApp, tokens: Tokens | None) -> None:
        self.label = label
        self.app = app
        self._tokens = tokens
        self._headers: dict[str, Headers] = {}

    def headers(self, owner: str) -> Headers:
        found = self._headers.get(owner)
        if found is None:
            found = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
            if self._tokens is None:
                found.append((b"x-owner", owner.encode()))
            else:
                token = self._tokens.customer(owner)
                found.append((b"authorization", f"Bearer {token}".encode()))
            self._headers[owner] = found
        return found

    async def ask(self, method: str, path: str, body: bytes, owner: str, want: int) -> bytes:
        answer = await call(self.app, method, path, self.headers(owner), body)
        if answer.status != want:
            raise RuntimeError(f"{self.label} {method} {path}: {answer.status} {answer.body!r}")
        return answer.body

    def add_line(self, count: int) -> Send:
        prefix = f"cost-{uuid.uuid4().hex[:10]}"
        for worker in range(CONNECTIONS):  # tokens signed before the clock starts
            for batch in range(count // CONNECTIONS // LINES_PER_CART + 1):
                self.headers(f"{prefix}-{worker}-{batch}")

        def send(worker: int, i: int) -> Awaitable[bytes]:
            owner = f"{prefix}-{worker}-{i // LINES_PER_CART}"
            return self.ask("POST", "/v1/cart/lines", b'{"sku":"sku-%d"}' % i, owner, 201)

        return send

    async def patch_qty(self) -> Send:
        prefix = f"cost-{uuid.uuid4().hex[:10]}"
        owners = [f"{prefix}-{w}" for w in range(CONNECTIONS)]
        paths = []
        for owner in owners:
            answer = await self.ask("POST", "/v1/cart/lines", b'{"sku":"patched"}', owner, 201)
            paths.append(f"/v1/cart/lines/{json.loads(answer)['line']['id']}")

        def send(worker: int, i: int) -> Awaitable[bytes]:
            body = b'{"qty":%d}' % (1 + i % 9)
            return self.ask("PATCH", paths[worker], body, owners[worker], 200)

        return send


async def closed_loop(count: int, send: Send, first: int = 0) -> tuple[int, float]:
    """``count`` requests from CONNECTIONS loops, each numbering its requests from ``first``
    (at most MAX_S); how many were done, and the CPU seconds they took."""
    deadline = time.monotonic() + MAX_S
    per_worker = count // CONNECTIONS
    done = 0

    async def loop(worker: int) -> None:
        nonlocal done
        for i in range(first, first + per_worker):
            if time.monotonic() > deadline:
                return
            await send(worker, i)
            done += 1

    cpu = time.process_time()
    async with asyncio.TaskGroup() as group:
        for worker in range(CONNECTIONS):
            group.create_task(loop(worker))
    return done, time.process_time() - cpu


OPS = ("add line", "patch qty")
SLICES = 8
"""Each run is cut in this many slices, the two apps taking turns: load from other processes
on the machine then slows both alike, and their ratio holds steadier than either figure."""

Medians = dict[tuple[str, str], float]


async def measure(targets: list[Target], count: int, repeats: int) -> tuple[Medians, Medians]:
    """Median CPU µs per request by (operation, app), and median ratio to the first app."""
    for target in targets:  # unmeasured: scripts loaded, connections opened, caches warm
        await closed_loop(min(count, 2000), target.add_line(min(count, 2000)))
        await closed_loop(min(count, 2000), await target.patch_qty())
    runs: dict[tuple[str, str], list[float]] = {(op, t.label): [] for op in OPS for t in targets}
    ratios: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    per_slice = max(count // SLICES // CONNECTIONS, 1) * CONNECTIONS
    for _ in range(repeats):
        for op in OPS:
            sends = {
                t.label: t.add_line(count) if op == OPS[0] else await t.patch_qty() for t in targets
            }
            cpu = dict.fromkeys(sends, 0.0)
            done = dict.fromkeys(sends, 0)
            for n in range(SLICES):
                first = n * per_slice // CONNECTIONS
                for target in targets if n % 2 == 0 else targets[::-1]:
                    did, seconds = await closed_loop(per_slice, sends[target.label], first)
                    done[target.label] += did
                    cpu[target.label] += seconds
            base = cpu[targets[0].label] / max(done[targets[0].label], 1)
            for target in targets:
                us = cpu[target.label] * 1e6 / max(done[target.label], 1)
                runs[op, target.label].append(us)
                ratios[op, target.label].append(us / (base * 1e6))
    return (
        {key: statistics.median(values) for key, values in runs.items()},
        {key: statistics.median(values) for key, values in ratios.items()},
    )


async def profile(target: Target, count: int, top: int) -> str:
    out = io.StringIO()
    for op in OPS:
        send = target.add_line(count) if op == OPS[0] else await target.patch_qty()
        profiler = cProfile.Profile()
        profiler.enable()
        await closed_loop(count, send)
        profiler.disable()
        out.write(f"\n## cProfile, {target.label} {op}, {count} requests\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


async def main_async(args: argparse.Namespace, workdir: Path) -> str:
    redis = RedisProcess(workdir / "redis")
    redis.start()
    try:
        os.environ["BENCH_REDIS_URL"] = redis.url
        from bench.floors.minimal_app import app as floor_app
        from cartsync.settings import Settings
        from cartsync.web.app import create_app

        settings = Settings.from_env(service_env(redis.url, workdir / "cartsync"))
        log_path = workdir / "cartsync.log"
        with log_path.open("w") as log:
            stderr, sys.stderr = sys.stderr, log  # the access log goes to a file, as served
            try:
                cartsync_app = create_app(settings)
            finally:
                sys.stderr = stderr
            cartsync = Target("cartsync", cartsync_app, Tokens())
            floor = Target("floor", floor_app, None)
            async with Lifespan(cartsync_app), Lifespan(floor_app):
                medians, ratios = await measure([floor, cartsync], args.count, args.repeats)
                report = _table(medians, ratios, args)
                if args.profile:
                    report += await profile(cartsync, args.count, args.top)
        lines = sum(1 for _ in log_path.open())
        return report + f"\ncartsync wrote {lines} log lines ({log_path.name})\n"
    finally:
        redis.stop()


def _table(medians: Medians, ratios: Medians, args: argparse.Namespace) -> str:
    rows = [
        f"In-process CPU µs per request, {args.repeats} runs x {args.count} requests, "
        f"{CONNECTIONS} at a time, in {SLICES} slices taking turns (medians of the runs)",
        "",
        "| operation | floor µs | cartsync µs | cartsync - floor | cartsync / floor |",
        "|---|---|---|---|---|",
    ]
    for op in OPS:
        floor, mine = medians[op, "floor"], medians[op, "cartsync"]
        share = ratios[op, "cartsync"]
        cells = [op, f"{floor:.0f}", f"{mine:.0f}", f"{mine - floor:.0f}", f"{share:.2f}x"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__)
    parser.add_argument("--count", type=int, default=6400, help="requests per run (default 6400)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per app and operation")
    parser.add_argument("--profile", action="store_true", help="add cProfile's top functions")
    parser.add_argument("--top", type=int, default=40, help="functions listed by --profile")
    args = parser.parse_args(argv)
    if not CONNECTIONS <= args.count <= 200_000 or not 0 < args.repeats <= 20:
        parser.error(f"--count must be {CONNECTIONS}..200000 and --repeats 1..20")
    with tempfile.TemporaryDirectory(prefix="cartsync-cost-") as tmp:
        sys.stdout.write(asyncio.run(main_async(args, Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
