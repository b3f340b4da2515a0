"""Test helpers for the client: fast retry delays, bounded waits, and a small TCP proxy on
loopback to see and break what the client sends the service."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from cartsync_client import Backoff, CartMirror, Subscription

T = TypeVar("T")

FAST = Backoff(base=0.05, cap=0.5)
"""Retry delays short enough for tests; the policy is the same."""


def refused(token: str) -> str:
    """The same claims with a signature the service refuses ("token has a bad signature")."""
    header, claims, signature = token.split(".")
    flipped = "A" if signature[10] != "A" else "B"
    return f"{header}.{claims}.{signature[:10]}{flipped}{signature[11:]}"


async def follow(live: Subscription, mirror: CartMirror, rev: int, *, limit_s: float = 20) -> None:
    """Apply updates to ``mirror`` until it reaches ``rev`` (bounded in time)."""
    async with asyncio.timeout(limit_s):
        while mirror.rev < rev:
            mirror.apply(await anext(live))


async def eventually(check: Callable[[], Awaitable[T | None]], *, limit_s: float = 20) -> T:
    """Poll ``check`` until it returns something (bounded in time and count)."""
    async with asyncio.timeout(limit_s):
        for _ in range(int(limit_s / 0.05) + 1):
            found = await check()
            if found is not None:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


Mode = Literal["pass", "drop_first_response", "reset"]
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1\r\n")


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to the service and records each HTTP request line.

    ``drop_first_response``: the first connection's request reaches the service, and once the
    service starts answering, the client's side is cut without that answer (a lost response).
    ``reset``: every connection is closed as soon as it is accepted (the service is unreachable).
    """

    def __init__(self, upstream_port: int, mode: Mode = "pass") -> None:
        self.upstream_port = upstream_port
        self.mode = mode
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    def cut(self) -> None:
        """Drop every open connection, as a network failure would."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Cut every connection so each handler sees EOF and returns by itself (cancelling a
        # start_server handler makes asyncio log a spurious error on Python 3.11).
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        first = self.connections == 1
        try:
            if self.mode == "reset":
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            drop = self.mode == "drop_first_response" and first
            upstream = asyncio.create_task(self._client_to_service(reader, up_writer))
            try:
                await self._service_to_client(up_reader, writer, drop=drop)
            finally:
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
                up_writer.close()
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _client_to_service(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while chunk := await reader.read(65536):
            for method, path in _REQUEST_LINE.findall(chunk):
                self.requests.append((method.decode(), path.decode()))
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _service_to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, drop: bool
    ) -> None:
        while chunk := await reader.read(65536):
            if drop:
                # The service has applied the request and started answering: lose the answer.
                self.dropped += 1
                writer.transport.abort()
                return
            writer.write(chunk)
            await writer.drain()
