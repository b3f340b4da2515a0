"""A lean keep-alive HTTP/1.1 client for small JSON requests, so the load is not what gets measured.

httpx spends about 1 ms of CPU per request on these machines, and its pool gets slower as
requests queue, so at 200/s a hiccup can tip the load generator into a backlog that then shows up
as seconds of "propagation". Writing the request bytes and reading a ``Content-Length`` body
costs a few tens of microseconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

IDLE_MAX_S = 2.0
"""Idle connections older than this are closed, not reused: Hypercorn drops them after 5 s, and
a request written into a connection the server is closing would fail for the wrong reason."""


class ProtocolError(Exception):
    """The server's answer is not the plain HTTP/1.1 response this client reads."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    async def exchange(self, request: bytes) -> tuple[Response, bool]:
        """Send one request; the response and whether the connection may be used again."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ProtocolError("response without Content-Length")
        body = await self.reader.readexactly(int(headers["content-length"]))
        reusable = headers.get("connection", "").lower() != "close"
        return Response(int(parts[1]), body), reusable

    def close(self) -> None:
        self.writer.close()


class Http1Client:
    """Up to ``max_connections`` keep-alive connections to one ``host:port``; an async context."""

    def __init__(self, host: str, port: int, *, max_connections: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    async def __aenter__(self) -> Http1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        while self._idle:
            self._idle.pop().close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        return await self.request("POST", path, body, headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots, asyncio.timeout(self.timeout_s):
            connection = await self._connection()
            try:
                response, reusable = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
            if reusable:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def _connection(self) -> _Connection:
        """The most recently used idle connection, or a new one."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.idle_since < IDLE_MAX_S:
                return connection
            connection.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)
