"""The Socket.IO peer (bench/peers/socketio/server.js) and a lean Socket.IO v4 client for it.

The client speaks Engine.IO 4 over the same ``websockets`` library the cartsync benchmarks use,
so both servers are measured by the same client code: connect to
``/socket.io/?EIO=4&transport=websocket``, read the ``0{...}`` open packet, send
``40{"room":...}`` to join the default namespace (the auth payload names the room), answer
every ``2`` ping with ``3``, and read events as ``42["event",payload]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.harness import Command, Processes, offer

PEER_DIR = Path(__file__).resolve().parent / "peers" / "socketio"
IO_TIMEOUT_S = 10.0


class PeerMissing(RuntimeError):
    """node or the peer's node_modules are not there: the peer rows are left out."""


NPM_TIMEOUT_S = 300


def available() -> str | None:
    """Why the peer cannot run here, or None when it can; installs its packages (``npm ci``
    from the lock file) the first time."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (PEER_DIR / "node_modules" / "socket.io").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            return "npm is not on PATH to install the peer's packages"
        try:
            done = subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PEER_DIR,
                capture_output=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"`npm ci` in {PEER_DIR} took over {NPM_TIMEOUT_S} s"
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-500:]
            return f"`npm ci` in {PEER_DIR} failed ({done.returncode}): {tail}"
    return None


def start(procs: Processes, redis_url: str, name: str) -> Command:
    why = available()
    if why is not None:
        raise PeerMissing(why)
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "PORT": "{port}", "REDIS_URL": redis_url}
    command = procs.command(name, [node, str(PEER_DIR / "server.js")], env, "/healthz")
    return command


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"


async def open_socket(
    stack: contextlib.AsyncExitStack, url: str, room: str, deflate: bool = True
) -> ClientConnection:
    """A socket in ``room``: Engine.IO open packet read, namespace joined and confirmed;
    offering permessage-deflate unless ``deflate`` is false."""
    ws = await stack.enter_async_context(
        connect(
            url,
            proxy=None,
            open_timeout=IO_TIMEOUT_S,
            close_timeout=2,
            max_queue=None,
            compression=offer(deflate),
        )
    )
    opened = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
    if not isinstance(opened, str) or not opened.startswith("0"):
        raise RuntimeError(f"expected an Engine.IO open packet, got {opened!r}")
    await ws.send("40" + json.dumps({"room": room}))
    for _ in range(10):
        packet = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        if packet == "2":
            await ws.send("3")
        elif isinstance(packet, str) and packet.startswith("40"):
            return ws
        else:
            raise RuntimeError(f"expected a namespace CONNECT answer, got {packet!r}")
    raise RuntimeError("no namespace CONNECT answer among the first 10 packets")


async def next_event(ws: ClientConnection) -> Any:
    """The payload of the next ``event``, answering pings on the way."""
    for _ in range(1000):
        packet = await ws.recv()
        if packet == "2":
            await ws.send("3")
            continue
        if isinstance(packet, str) and packet.startswith("42"):
            name, payload = json.loads(packet[2:])
            if name == "event":
                return payload
        raise RuntimeError(f"unexpected Socket.IO packet: {packet!r:.80}")
    raise RuntimeError("1000 packets without an event")
