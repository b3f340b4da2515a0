"""Websocket fuzzing: whatever a client sends, the server closes with the documented code.

Frames come from a seeded RNG (``CARTSYNC_FUZZ_SEED`` replays a run) and go out over many
sockets, before authentication and after it (an ``auth`` frame or the ``bearer.`` subprotocol),
after valid frames sent back to back (``sync`` then garbage). Each socket must be closed by the
server with the code docs/protocol.md gives (1003 binary, 1007 not JSON or not UTF-8, 1008
policy or schema, 1009 over 64 KiB) and a reason, within 5 s; never 1011, never a dropped TCP
connection (1006). Afterwards no session is left behind: the gauges are back at their baseline,
and every customer can open as many sockets as the per-owner limit allows.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import string
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import Tokens
from tests.reliability.conftest import (
    CHANNELS,
    CLOSE_WITHIN_S,
    CONNECTIONS,
    SOAK,
    Ending,
    dial,
    ending,
    healthy,
    live,
    next_frame,
    running,
    scrape,
    settle,
)
from tests.support.processes import RedisProcess, ServiceProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FRAMES = 30_000 if SOAK else 3_000
"""At least this many frames per run."""
CUSTOMERS = 24
"""One worker per customer: a customer never has two fuzzing sockets open at once."""
BUDGET_S = 600.0 if SOAK else 75.0
"""The run stops generating sockets after this long (and then falls short of FRAMES)."""
MAX_PER_OWNER = 20
"""The service's default CARTSYNC_WS_MAX_PER_OWNER, which the run leaves as it is."""
NEST = 1_000
KIB = 1024

POLICY, NOT_JSON, BINARY, TOO_BIG = 1008, 1007, 1003, 1009


@dataclass
class Shot:
    """One frame to send: text or bytes, how the server may answer it, and whether it ends
    the socket. ``closes`` are the codes it may close with (for an ending frame: must)."""

    name: str
    data: str | bytes
    text: bool = True
    closes: frozenset[int] = frozenset()
    ends: bool = False


PING = Shot("ping", '{"type": "ping"}')


@dataclass
class Script:
    """One socket's life: how it authenticates, what it sends before the garbage, the garbage."""

    customer: int
    auth: str  # "none" (garbage first), "frame" (an auth message), "subprotocol" (bearer.)
    prefix: list[Shot]
    garbage: Shot
    trailing: int = 0
    """Pings sent right after the garbage, back to back (still in flight when it closes)."""

    @property
    def expected(self) -> frozenset[int]:
        codes = set(self.garbage.closes)
        for shot in self.prefix:
            codes |= shot.closes
        return frozenset(codes)

    def label(self) -> str:
        synced = any(s.name.startswith("sync") for s in self.prefix)
        edges = sorted({s.name for s in self.prefix if s.closes})
        return (
            f"{self.garbage.name} (auth: {self.auth}{', after sync' if synced else ''}"
            f"{''.join(', after ' + e for e in edges)}{', pings after' if self.trailing else ''})"
        )


# Generating frames ------------------------------------------------------------------------


def ends(name: str, data: str | bytes, *codes: int, text: bool = True) -> Shot:
    """A frame that must end the socket with one of ``codes``."""
    return Shot(name, data, text=text, closes=frozenset(codes), ends=True)


def may_close(name: str, data: str, *codes: int) -> Shot:
    """A frame the server answers, or may refuse by closing with one of ``codes``."""
    return Shot(name, data, closes=frozenset(codes))


def _text(rng: random.Random, size: int) -> str:
    """Random text that is not JSON (it starts with a character no JSON value starts with)."""
    alphabet = string.printable + "äöü€漢字🙂\u200b\ufeff"
    return "~" + "".join(rng.choice(alphabet) for _ in range(size))


def _invalid_utf8(rng: random.Random) -> bytes:
    good = json.dumps({"type": "sync", "since": rng.randrange(100)}).encode()
    bad = rng.choice([b"\xff", b"\xfe\xfe", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"])
    cut = rng.randrange(len(good) + 1)
    return good[:cut] + bad + good[cut:]


def _op(rng: random.Random, **fields: object) -> str:
    frame: dict[str, object] = {
        "type": "op",
        "id": f"fz-{rng.getrandbits(64):016x}",
        "name": "add_line",
        "body": {"sku": f"FZ-{rng.randrange(50)}", "qty": 1},
    }
    frame.update(fields)
    return json.dumps(frame)


def garbage(rng: random.Random, *, authenticated: bool) -> Shot:
    """One frame that must end the socket, with the code(s) the protocol gives for it."""
    kind = rng.randrange(17)
    if kind == 0:
        data = rng.randbytes(rng.randrange(1, 2048))
        return ends("binary", data, BINARY, text=False)
    if kind == 1:
        return ends("text noise", _text(rng, rng.randrange(1, 512)), NOT_JSON)
    if kind == 2:
        return ends("invalid utf-8", _invalid_utf8(rng), NOT_JSON)
    if kind == 3:
        wrong = rng.choice(
            [
                '{"type": "sync", "since": "5"}',
                '{"type": "sync", "since": -1}',
                '{"type": "sync", "since": true}',
                '{"type": "sync", "since": 1.5}',
                '{"type": "sync", "epoch": 7}',
                '{"type": "sync", "epoch": "' + "e" * 65 + '"}',
                '{"type": "sync", "at": ["x"]}',
                '{"type": 5}',
                '{"type": null}',
                "{}",
                "[]",
                "5",
                '"sync"',
                "null",
                "true",
                '[{"type": "ping"}]',
            ]
        )
        return ends("wrong types", wrong, POLICY)
    if kind == 4:
        base = rng.choice(['"type": "ping"', '"type": "sync", "since": 0', '"type": "pong"'])
        extra = rng.choice(['"x": 1', '"Type": "ping"', '"since2": 0', '"token": "t"'])
        return ends("unknown field", "{" + base + ", " + extra + "}", POLICY)
    if kind == 5:
        name = rng.choice(["subscribe", "hello", "snapshot", "event", "ack", "SYNC", "", "op2"])
        return ends("unknown type", json.dumps({"type": name}), POLICY)
    if kind == 6:
        return ends("since 1e14 (a float)", '{"type": "sync", "since": 1e14}', POLICY)
    if kind == 7:
        return ends("deep [ (unclosed)", "[" * NEST, NOT_JSON, POLICY)
    if kind == 8:
        deep = "[" * NEST + "]" * NEST
        return ends("deep [ ]", deep, NOT_JSON, POLICY)
    if kind == 9:
        deep = '{"type": "sync", "since": ' + "[" * NEST + "]" * NEST + "}"
        return ends("deep since", deep, NOT_JSON, POLICY)
    if kind == 10:
        blob = rng.randbytes(70 * KIB).hex()[: rng.randrange(66 * KIB, 140 * KIB)]
        oversize = json.dumps({"type": "ping", "pad": blob})
        return ends("oversize text", oversize, TOO_BIG)
    if kind == 11:
        # Small on the wire with permessage-deflate; 64 KiB is counted after decompression.
        oversize = json.dumps({"type": "ping", "pad": "a" * (rng.randrange(65, 400) * KIB)})
        return ends("oversize compressible", oversize, TOO_BIG)
    if kind == 12:
        blob = rng.randbytes(rng.randrange(65 * KIB, 100 * KIB))
        return ends("oversize binary", blob, TOO_BIG, BINARY, text=False)
    if kind == 13:
        bad = rng.choice(
            [
                _op(rng, id="has space"),
                _op(rng, id="x" * 256),
                _op(rng, id=""),
                _op(rng, id=5),
                _op(rng, params={"line_id": "L" * 129}),
                _op(rng, params={"line_id": 7}),
                _op(rng, params=[]),
                _op(rng, if_match=-1),
                _op(rng, if_match="3"),
                _op(rng, name=None),
            ]
        )
        return ends("op of wrong shape", bad, POLICY)
    if kind == 14 and authenticated:
        again = json.dumps({"type": "auth", "token": "t" * rng.randrange(1, 100)})
        return ends("second auth", again, POLICY)
    if kind == 14:
        first = rng.choice(['{"type": "sync"}', '{"type": "ping"}', _op(rng)])
        return ends("first frame not auth", first, POLICY)
    if kind == 15:
        token = rng.choice(["", "x", "a.b.c", "t" * 8193, "eyJhbGciOiJub25lIn0.e30."])
        bad_auth = json.dumps({"type": "auth", "token": token})
        return ends("bad auth", bad_auth, POLICY)
    messy = json.dumps({"type": "ping"})[: rng.randrange(1, 15)]
    return ends("truncated JSON", messy, NOT_JSON, POLICY)


def valid_or_edge(rng: random.Random) -> Shot:
    """A frame that must not end the socket, or edge cases that may end it only as noted."""
    kind = rng.randrange(10)
    if kind == 0:
        return Shot("ping", '{"type": "ping"}')
    if kind == 1:
        return Shot("pong", '{"type": "pong"}')
    if kind == 2:
        return Shot("sync", '{"type": "sync"}')
    if kind == 3:
        return Shot("sync since", json.dumps({"type": "sync", "since": rng.randrange(5)}))
    if kind == 4:
        return Shot("op", _op(rng))
    if kind == 5:
        # Fields a body does not know, an unknown op name: nack, which never closes.
        odd = rng.choice(
            [
                _op(rng, body={"sku": "FZ-1", "qty": 1, "bogus": True}),
                _op(rng, name="launch_rockets"),
                _op(rng, body={"qty": "many"}),
                _op(rng, name="patch_line"),
            ]
        )
        return Shot("op nacked", odd)
    if kind == 6:
        # The protocol sets no ceiling on since: a snapshot answers it; 1008 is the only close
        # that could be argued for (a schema limit), never 1011.
        huge = rng.choice([10**14, 2**63, 2**70])
        return may_close("sync huge since", json.dumps({"type": "sync", "since": huge}), POLICY)
    if kind == 7:
        return may_close("op huge if_match", _op(rng, if_match=2**70), POLICY)
    if kind == 8:
        deep = '{"a": ' * NEST + "1" + "}" * NEST
        body_deep = f'{{"type": "op", "id": "fz-{rng.getrandbits(64):x}", "name": "add_line", '
        body_deep += f'"body": {deep}}}'
        return may_close("op deep body", body_deep, NOT_JSON, POLICY)
    return Shot("sync since 0", '{"type": "sync", "since": 0}')


def script(rng: random.Random, customer: int) -> Script:
    auth = rng.choice(["none", "frame", "subprotocol", "subprotocol"])
    authenticated = auth != "none"
    prefix: list[Shot] = []
    if authenticated:
        if rng.random() < 0.5:
            prefix.append(Shot("sync", '{"type": "sync"}'))  # sync then garbage, back to back
        prefix += [valid_or_edge(rng) for _ in range(rng.randrange(4))]
    shot = garbage(rng, authenticated=authenticated)
    trailing = rng.randrange(1, 50) if rng.random() < 0.2 else 0
    return Script(customer, auth, prefix, shot, trailing)


# Running scripts --------------------------------------------------------------------------


@dataclass
class Outcome:
    script: Script
    frames: int
    refused: str = ""
    end: Ending | None = None

    def problem(self) -> str:
        """'' when the server did what the protocol says; otherwise what it did instead."""
        if self.refused:
            return self.refused
        assert self.end is not None
        if self.end.code is None:
            return "hang: no close within 5 s"
        if self.end.tcp_open:
            return f"closed {self.end.code}, but the server kept the TCP connection open"
        if self.end.code not in self.script.expected:
            return f"closed {self.end.code} {self.end.reason[:60]!r}"
        if not self.end.reason:
            return f"closed {self.end.code} without a reason"
        if "too many" in self.end.reason:
            return f"refused by the per-owner limit: {self.end.reason!r}"
        return ""


async def send(ws: ClientConnection, shot: Shot) -> None:
    # bytes with text=True go out as a text frame unchecked: how invalid UTF-8 is sent.
    await ws.send(shot.data, text=shot.text)


async def run_script(service: ServiceProcess, token: str, plan: Script) -> Outcome:
    subprotocols = ["cartsync.v1", f"bearer.{token}"] if plan.auth == "subprotocol" else None
    frames = 0
    async with dial(service, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        try:
            if plan.auth == "frame":
                await ws.send(json.dumps({"type": "auth", "token": token}))
                frames += 1
            if plan.auth != "none":
                hello = await next_frame(ws, wait_s=CLOSE_WITHIN_S)
                if hello.get("type") != "hello":
                    return Outcome(plan, frames, refused=f"no hello: {hello}")
            for shot in [*plan.prefix, plan.garbage, *[PING] * plan.trailing]:
                await send(ws, shot)
                frames += 1
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            reason = closed.rcvd.reason if closed.rcvd else ""
            if plan.auth != "none" and frames <= int(plan.auth == "frame"):
                return Outcome(plan, frames, refused=f"closed before hello: {code} {reason!r}")
        except TimeoutError:
            return Outcome(plan, frames, refused="no hello within 5 s")
        return Outcome(plan, frames, end=await ending(ws, CLOSE_WITHIN_S))


async def full_house(service: ServiceProcess, token: str) -> str:
    """Open the per-owner limit's worth of sockets at once; '' if every one gets its hello
    and answers a ping."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_one_normal(service, token)) for _ in range(MAX_PER_OWNER)]
    failures = [t.result() for t in tasks if t.result()]
    return failures[0] if failures else ""


async def _one_normal(service: ServiceProcess, token: str, hold_s: float = 1.0) -> str:
    try:
        async with live(service, token) as ws:
            await ws.send('{"type": "sync"}')
            snap = await next_frame(ws)
            await ws.send('{"type": "ping"}')
            pong = await next_frame(ws)
            if snap["type"] != "snapshot" or pong != {"type": "pong"}:
                return f"unexpected frames {snap['type']}, {pong}"
            await asyncio.sleep(hold_s)  # held open while the others connect
    except (ConnectionClosed, TimeoutError, AssertionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


async def test_fuzzed_frames_close_sockets_with_the_documented_code(
    own_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    seed = int(os.environ.get("CARTSYNC_FUZZ_SEED", str(random.SystemRandom().getrandbits(32))))
    print(f"\nws fuzz seed: {seed} (replay with CARTSYNC_FUZZ_SEED={seed})")
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    customers = [f"fuzz-{run}-{n}" for n in range(CUSTOMERS)]
    token_of = {c: tokens.token("customer", c) for c in customers}

    with running(own_redis.url, tmp_path / "service") as svc:
        baseline = await scrape(svc)
        outcomes: list[Outcome] = []
        sent = 0
        started = time.monotonic()

        async def worker(n: int) -> None:
            nonlocal sent
            wrng = random.Random(rng.getrandbits(64))
            customer = customers[n]
            for _ in range(FRAMES):  # bounded; the shared frame count stops it much sooner
                if sent >= FRAMES or time.monotonic() - started > BUDGET_S:
                    return
                outcome = await run_script(svc, token_of[customer], script(wrng, n))
                sent += outcome.frames
                outcomes.append(outcome)

        async with asyncio.TaskGroup() as tg:
            for n in range(CUSTOMERS):
                tg.create_task(worker(n))
        took = time.monotonic() - started

        problems = collections.Counter(
            f"{o.script.label()}: {o.problem()}" for o in outcomes if o.problem()
        )
        codes = collections.Counter(
            str(o.end.code) if o.end and o.end.code else "hang" for o in outcomes
        )

        # Afterwards: no session left, the service healthy, each customer's limit whole.
        async def no_sessions() -> bool:
            m = await scrape(svc)
            return m[CONNECTIONS] == baseline[CONNECTIONS] and m[CHANNELS] == baseline[CHANNELS]

        settled = await settle(no_sessions)
        after = await scrape(svc)
        alive = await healthy(svc)
        limits = {c: await full_house(svc, token_of[c]) for c in customers[:4]}
        normal = {c: await _one_normal(svc, token_of[c], hold_s=0) for c in customers}

    print(
        f"ws fuzz: {sent} frames on {len(outcomes)} sockets in {took:.1f} s (seed {seed}); "
        f"closes {dict(sorted(codes.items()))}; {sum(problems.values())} sockets not closed "
        f"as documented; after: connections {after[CONNECTIONS]:.0f} "
        f"(baseline {baseline[CONNECTIONS]:.0f}), channels {after[CHANNELS]:.0f}"
    )
    for line, count in problems.most_common(40):
        print(f"  {count:4d} x {line}")

    assert sent >= FRAMES, f"only {sent} frames in {took:.0f} s"
    assert not problems, f"{sum(problems.values())} sockets not closed as documented: " + (
        "; ".join(f"{n} x {line}" for line, n in problems.most_common(8))
    )
    assert alive, "the service no longer answers /healthz"
    assert settled, (
        f"sessions left behind: connections {after[CONNECTIONS]:.0f}, "
        f"channels {after[CHANNELS]:.0f} (baseline {baseline[CONNECTIONS]:.0f}, "
        f"{baseline[CHANNELS]:.0f})"
    )
    assert not any(limits.values()), f"per-owner limit eaten: {limits}"
    assert not any(normal.values()), f"a normal socket fails: {normal}"
