"""Idle sockets: server resident memory (VmRSS) grown per authenticated, synced, idle websocket
over 2,000 connections, one customer each; beside its floor, the minimal Starlette-on-Hypercorn
app's ``/ws`` (accept, one frame, read), and the Socket.IO peer (each socket in its own room).

Each run starts a fresh server process (memory a process once grew is not given back, so a
second run in the same process would measure reuse), opens and closes 20 sockets unmeasured,
reads VmRSS, opens the N sockets, waits a second, and reads VmRSS again.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import service_env
from websockets.asyncio.client import connect

from bench import floors, sio
from bench.harness import REPEATS, Command, Cores, Report, processes, raise_fd_limit, rss_kb
from bench.propagation import IO_TIMEOUT_S, Tokens, _open_socket
from bench.stats import Spread

NAME = "idle"
TARGET_KB = 20.0
WARM = 20
OPENING = 32
"""Sockets being opened at once."""


@dataclass(frozen=True)
class Plan:
    name: str
    sockets: int
    repeats: int
    settle_s: float = 1.0


FULL = Plan(name="full", sockets=2000, repeats=REPEATS)
QUICK = Plan(name="quick", sockets=500, repeats=REPEATS, settle_s=0.5)

Opener = Callable[[contextlib.AsyncExitStack, int], Awaitable[object]]


async def _grown_kb(pid: int, count: int, open_one: Opener, settle_s: float) -> float:
    async with contextlib.AsyncExitStack() as warm:
        for i in range(WARM):
            await open_one(warm, -1 - i)
    await asyncio.sleep(settle_s)
    before = rss_kb(pid)
    async with contextlib.AsyncExitStack() as stack:
        gate = asyncio.Semaphore(OPENING)

        async def open_gated(i: int) -> None:
            async with gate:
                await open_one(stack, i)

        async with asyncio.TaskGroup() as group:
            for i in range(count):
                group.create_task(open_gated(i))
        await asyncio.sleep(settle_s)
        after = rss_kb(pid)
    return (after - before) / count


def _cartsync_opener(url: str) -> Opener:
    tokens = Tokens()
    prefix = f"idle-{uuid.uuid4().hex[:10]}"
    ws_url = "ws" + url.removeprefix("http") + "/v1/ws"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        return await _open_socket(stack, ws_url, tokens.customer(f"{prefix}-{i}"))

    return open_one


def _floor_opener(url: str) -> Opener:
    ws_url = "ws" + url.removeprefix("http") + "/ws"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        ws = await stack.enter_async_context(
            connect(ws_url, proxy=None, open_timeout=IO_TIMEOUT_S, close_timeout=2)
        )
        await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        return ws

    return open_one


def _socketio_opener(url: str) -> Opener:
    prefix = f"idle-{uuid.uuid4().hex[:10]}"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        return await sio.open_socket(stack, sio.ws_url(url), f"{prefix}-{i}")

    return open_one


def run(quick: bool = False) -> Report:
    plan = QUICK if quick else FULL
    fds = raise_fd_limit()
    cores = Cores.detect()
    peer_missing = sio.available()
    results: dict[str, list[float]] = {"floor": [], "cartsync": []}
    if peer_missing is None:
        results["socket.io"] = []
    pinned: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        pinned += [*procs.notes, cores.pin_self()]
        for repeat in range(plan.repeats):
            for kind in results:
                # A fresh server per run, stopped before the next one starts.
                with processes(Path(tmp) / f"{kind}-{repeat}", cores) as own:
                    if kind == "cartsync":
                        env = service_env(server.url, Path(tmp) / f"cartsync-{repeat}")
                        started = own.service("cartsync", env)
                        url, proc = started.url, started.proc
                        opener = _cartsync_opener(url)
                    else:
                        command: Command = (
                            floors.minimal_app(own, server.url)
                            if kind == "floor"
                            else sio.start(own, server.url, "socket.io peer")
                        )
                        url, proc = command.url, command.proc
                        opener = (_floor_opener if kind == "floor" else _socketio_opener)(url)
                    assert proc is not None
                    if repeat == 0:
                        pinned += own.notes
                    grown = asyncio.run(_grown_kb(proc.pid, plan.sockets, opener, plan.settle_s))
                    results[kind].append(grown)
    return _report(plan, pinned, results, fds, peer_missing)


LABELS = {
    "floor": "floor: Starlette websocket on Hypercorn (accept, 1 frame, read)",
    "cartsync": "cartsync: authenticated, synced socket (1 customer each)",
    "socket.io": "Socket.IO + redis-adapter (node), 1 room each",
}


def _report(
    plan: Plan,
    pinned: list[str],
    results: dict[str, list[float]],
    fds: int,
    peer_missing: str | None,
) -> Report:
    headers = ["server", "runs x sockets", "RSS KB per socket", "vs floor"]
    floor = Spread.of(results["floor"]).median
    rows: list[list[str]] = []
    verdict = ""
    for kind, values in results.items():
        grown = Spread.of(values)
        vs = "1.0x" if kind == "floor" else f"{grown.median / floor:.1f}x" if floor > 0 else "n/a"
        rows.append([LABELS[kind], f"{len(values)} x {plan.sockets}", grown.cell(), vs])
        if kind == "cartsync":
            met = "met" if grown.median <= TARGET_KB else "NOT met"
            verdict = (
                f"cartsync: {grown.median:.1f} KB of server RSS per idle socket; "
                f"target <= {TARGET_KB:.0f} KB: {met}"
            )
    notes = [
        f"{plan.sockets} sockets per run, a fresh server process per run, {plan.repeats} runs; "
        f"VmRSS from /proc/<pid>/status {plan.settle_s} s after the last socket opened, minus "
        f"VmRSS before (after {WARM} warm-up sockets came and went); cells: median run "
        "(lowest-highest run)",
        f"open-file limit: {fds}",
        *(f"pinned: {line}" for line in pinned),
        *([f"Socket.IO peer left out: {peer_missing}"] if peer_missing else []),
        verdict,
    ]
    data = {
        "plan": vars(plan) | {"target_kb": TARGET_KB},
        "pinned": pinned,
        "verdict": verdict,
        "kb_per_socket": results,
    }
    title = f"Idle websockets: server memory per socket over {plan.sockets:,}"
    return Report(NAME, title, headers, rows, notes, data)
