"""The floor for cartsync's HTTP and websocket benchmarks: the least a service built on the same
parts (Hypercorn, Starlette, msgspec, redis-py asyncio, one Lua script) can do per request.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/0 hypercorn -w 0 \\
        -c python:bench.floors.minimal_app.HypercornConfig -b 127.0.0.1:8002 \\
        bench.floors.minimal_app:app

``POST /v1/cart/lines`` and ``PATCH /v1/cart/lines/{line_id}`` decode the body with msgspec,
run one script (HINCRBY + HSET + XADD on keys of one hash-tagged owner, named by the
``X-Owner`` header) and answer JSON. No authentication, rate limit, idempotency or metrics:
what cartsync does beyond this is what the ratio to this floor measures. ``/ws`` accepts a
websocket, sends one small frame and reads until the client leaves (the idle-socket floor).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import msgspec
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

SCRIPT = """
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', 1000, rev .. '-0', 'e', ARGV[2])
return rev
"""


class HypercornConfig:
    """What cartsync's ``serve`` sets too: keep-alive connections are not cut every 1,000."""

    keep_alive_max_requests = 100_000
    graceful_timeout = 5.0


class AddLine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    qty: Annotated[int, msgspec.Meta(ge=1, le=999)] = 1


class PatchLine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    qty: Annotated[int, msgspec.Meta(ge=0, le=999)]


class Line(msgspec.Struct):
    id: str
    sku: str
    qty: int


class LineResult(msgspec.Struct):
    rev: int
    line: Line


_add = msgspec.json.Decoder(AddLine)
_patch = msgspec.json.Decoder(PatchLine)
_encode = msgspec.json.Encoder().encode


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    app.state.script = client.register_script(SCRIPT)
    try:
        yield
    finally:
        await client.aclose()


def _keys(owner: str) -> list[str]:
    return [f"floor:{{{owner}}}:meta", f"floor:{{{owner}}}:lines", f"floor:{{{owner}}}:log"]


async def _write(request: Request, line: Line, status: int) -> Response:
    encoded = _encode(line)
    owner = request.headers["x-owner"]
    rev = await request.app.state.script(keys=_keys(owner), args=[line.id, encoded])
    body = _encode(LineResult(rev=int(rev), line=line))
    return Response(body, status, media_type="application/json")


async def add_line(request: Request) -> Response:
    try:
        body = _add.decode(await request.body())
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        return Response(_encode({"error": str(exc)}), 422, media_type="application/json")
    return await _write(request, Line(id=f"L-{body.sku}", sku=body.sku, qty=body.qty), 201)


async def patch_line(request: Request) -> Response:
    try:
        body = _patch.decode(await request.body())
    except msgspec.DecodeError as exc:
        return Response(_encode({"error": str(exc)}), 422, media_type="application/json")
    line_id = request.path_params["line_id"]
    return await _write(request, Line(id=line_id, sku=line_id, qty=body.qty), 200)


async def healthz(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def idle_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text('{"type":"hello"}')
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/v1/cart/lines", add_line, methods=["POST"]),
        Route("/v1/cart/lines/{line_id}", patch_line, methods=["PATCH"]),
        WebSocketRoute("/ws", idle_socket),
    ],
    lifespan=lifespan,
)
