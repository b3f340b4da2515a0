"""Idle sockets: server resident memory (VmRSS) grown per authenticated, synced, idle websocket
over 2,000 and 10,000 connections, one customer each; beside its floor, the minimal
Starlette-on-Hypercorn app's ``/ws`` (accept, one frame, read), and the Socket.IO peer (each
socket in its own room). Every server is measured with a client that offers permessage-deflate
(as browsers do) and with one that does not; cartsync also with CARTSYNC_WS_COMPRESSION=on.

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
from bench.harness import (
    OFFERS,
    REPEATS,
    Command,
    Cores,
    Report,
    offer,
    processes,
    raise_fd_limit,
    rss_kb,
)
from bench.propagation import IO_TIMEOUT_S, Tokens, _open_socket
from bench.stats import Spread

NAME = "idle"
TARGET_KB = 30.0
"""Issue 14: with a browser-like client (deflate offered), and not more than Socket.IO."""
WARM = 20
OPENING = 32
"""Sockets being opened at once."""


@dataclass(frozen=True)
class Plan:
    name: str
    sizes: tuple[tuple[int, int], ...]
    """(sockets, runs) for each size measured."""
    settle_s: float = 1.0


FULL = Plan(name="full", sizes=((2000, REPEATS), (10_000, 1)))
QUICK = Plan(name="quick", sizes=((500, REPEATS),), settle_s=0.5)
SMOKE = Plan(name="smoke", sizes=((20, 1),), settle_s=0.1)
PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}

Opener = Callable[[contextlib.AsyncExitStack, int], Awaitable[object]]

VARIANTS: tuple[tuple[str, str], ...] = (
    ("floor", "deflate offered"),
    ("floor", "no deflate"),
    ("cartsync", "deflate offered"),
    ("cartsync", "no deflate"),
    ("cartsync, compression on", "deflate offered"),
    ("socket.io", "deflate offered"),
    ("socket.io", "no deflate"),
)
"""Each server and the way its client opens: see ``bench.harness.OFFERS``."""


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


def _cartsync_opener(url: str, deflate: bool) -> Opener:
    tokens = Tokens()
    prefix = f"idle-{uuid.uuid4().hex[:10]}"
    ws_url = "ws" + url.removeprefix("http") + "/v1/ws"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        return await _open_socket(stack, ws_url, tokens.customer(f"{prefix}-{i}"), deflate)

    return open_one


def _floor_opener(url: str, deflate: bool) -> Opener:
    ws_url = "ws" + url.removeprefix("http") + "/ws"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        ws = await stack.enter_async_context(
            connect(
                ws_url,
                proxy=None,
                open_timeout=IO_TIMEOUT_S,
                close_timeout=2,
                compression=offer(deflate),
            )
        )
        await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        return ws

    return open_one


def _socketio_opener(url: str, deflate: bool) -> Opener:
    prefix = f"idle-{uuid.uuid4().hex[:10]}"

    async def open_one(stack: contextlib.AsyncExitStack, i: int) -> object:
        return await sio.open_socket(stack, sio.ws_url(url), f"{prefix}-{i}", deflate)

    return open_one


Key = tuple[str, str, int]
"""(server, how the client opens, sockets)."""


def run(plan_name: str = "full") -> Report:
    plan = PLANS[plan_name]
    fds = raise_fd_limit()  # before the servers start: they inherit it
    cores = Cores.detect()
    peer_missing = sio.available()
    variants = [v for v in VARIANTS if peer_missing is None or v[0] != "socket.io"]
    results: dict[Key, list[float]] = {}
    pinned: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="cartsync-bench-") as tmp,
        processes(Path(tmp), cores) as procs,
    ):
        server = procs.redis()
        pinned += [*procs.notes, cores.pin_self()]
        for sockets, repeats in plan.sizes:
            for repeat in range(repeats):
                for kind, how in variants:
                    deflate = OFFERS[how]
                    folder = Path(tmp) / f"{len(results)}-{repeat}"
                    # A fresh server per run, stopped before the next one starts.
                    with processes(folder, cores) as own:
                        if kind.startswith("cartsync"):
                            on = "on" if kind.endswith("on") else "off"
                            env = service_env(
                                server.url, folder / "cartsync", CARTSYNC_WS_COMPRESSION=on
                            )
                            started = own.service(kind, env)
                            url, proc = started.url, started.proc
                            opener = _cartsync_opener(url, deflate)
                        else:
                            command: Command = (
                                floors.minimal_app(own, server.url)
                                if kind == "floor"
                                else sio.start(own, server.url, "socket.io peer")
                            )
                            url, proc = command.url, command.proc
                            make = _floor_opener if kind == "floor" else _socketio_opener
                            opener = make(url, deflate)
                        assert proc is not None
                        if repeat == 0 and sockets == plan.sizes[0][0]:
                            pinned += own.notes
                        grown = asyncio.run(_grown_kb(proc.pid, sockets, opener, plan.settle_s))
                        results.setdefault((kind, how, sockets), []).append(grown)
    return _report(plan, pinned, results, fds, peer_missing)


LABELS = {
    "floor": "floor: Starlette websocket on Hypercorn (accept, 1 frame, read)",
    "cartsync": "cartsync: authenticated, synced socket (1 customer each)",
    "cartsync, compression on": "cartsync, CARTSYNC_WS_COMPRESSION=on",
    "socket.io": "Socket.IO + redis-adapter (node), 1 room each",
}


def _report(
    plan: Plan,
    pinned: list[str],
    results: dict[Key, list[float]],
    fds: int,
    peer_missing: str | None,
) -> Report:
    headers = ["server", "client", "runs x sockets", "RSS KB per socket", "vs floor (same client)"]
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for (kind, how, sockets), values in results.items():
        floor = Spread.of(results["floor", how, sockets]).median
        grown = Spread.of(values)
        vs = "1.0x" if kind == "floor" else f"{grown.median / floor:.1f}x" if floor > 0 else "n/a"
        rows.append([LABELS[kind], how, f"{len(values)} x {sockets:,}", grown.cell(), vs])
    for (kind, how, sockets), values in results.items():
        if kind != "cartsync" or how != "deflate offered":
            continue
        mine = Spread.of(values).median
        met = "met" if mine <= TARGET_KB else "NOT met"
        line = (
            f"{sockets:,} sockets, deflate offered: cartsync {mine:.1f} KB of server RSS per "
            f"idle socket; target <= {TARGET_KB:.0f} KB: {met}"
        )
        peer = results.get(("socket.io", how, sockets))
        if peer is not None:
            theirs = Spread.of(peer).median
            line += f"; Socket.IO peer {theirs:.1f} KB: " + (
                "not more than the peer" if mine <= theirs else "MORE than the peer"
            )
        verdicts.append(line)
    notes = [
        f"sizes: {', '.join(f'{n:,} sockets x {r} runs' for n, r in plan.sizes)}; a fresh "
        f"server process per run; VmRSS from /proc/<pid>/status {plan.settle_s} s after the "
        f"last socket opened, minus VmRSS before (after {WARM} warm-up sockets came and went); "
        "cells: median run (lowest-highest run)",
        "client: the `websockets` library offering permessage-deflate (`deflate offered`, as "
        "browsers do) or not (`no deflate`); cartsync declines the offer unless started with "
        "CARTSYNC_WS_COMPRESSION=on, the floor (plain Hypercorn) always accepts it, the "
        "Socket.IO peer's engine declines it by default",
        f"open-file limit: {fds}",
        *(f"pinned: {line}" for line in pinned),
        *([f"Socket.IO peer left out: {peer_missing}"] if peer_missing else []),
        *verdicts,
    ]
    data = {
        "plan": vars(plan) | {"target_kb": TARGET_KB, "sizes": [list(x) for x in plan.sizes]},
        "pinned": pinned,
        "verdicts": verdicts,
        "kb_per_socket": [
            {"server": kind, "client": how, "sockets": n, "runs": values}
            for (kind, how, n), values in results.items()
        ],
    }
    sizes = " and ".join(f"{n:,}" for n, _ in plan.sizes)
    title = f"Idle websockets: server memory per socket over {sizes}"
    return Report(NAME, title, headers, rows, notes, data)
