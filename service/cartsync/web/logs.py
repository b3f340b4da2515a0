"""Structured logs: one JSON line per request and per event worth knowing, with a request id.

Tokens never reach a log line: the access line carries method, route template, status, time
and ids, and no header or query string.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import secrets
import sys
import time
import traceback
from collections.abc import Iterable
from typing import TextIO

import msgspec
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartsync.web import tracing
from cartsync.web.metrics import Metrics
from cartsync.wire import ErrorBody, ErrorDetail

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_INCOMING_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
access = logging.getLogger("cartsync.access")
errors = logging.getLogger("cartsync.web")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.trace_id = tracing.trace_id()
        return True


_json_handler: logging.StreamHandler[TextIO] | None = None
"""The JSON handler ``configure`` installed: access lines are written to its stream directly."""


def configure(fmt: str, level: str) -> None:
    """Route every cartsync log line to stderr in the chosen format."""
    global _json_handler
    root = logging.getLogger("cartsync")
    out = handler(fmt, sys.stderr)
    root.handlers[:] = [out]
    root.setLevel(level.upper())
    root.propagate = False
    _json_handler = out if fmt == "json" else None


_access_enc = msgspec.json.Encoder()


def log_access(method: str, route: str, status: int | None, seconds: float) -> None:
    """The access line of one request or websocket.

    In the JSON format it is encoded here and written to the handler's stream, the same fields
    as a ``logging`` record would give it: through ``logging`` and python-json-logger it cost
    ~30 µs, a twentieth of a cart mutation's CPU. Any other set-up (text, handlers someone
    added) goes through ``logging``.
    """
    duration_ms = round(seconds * 1000, 2)
    out = _json_handler
    root = logging.getLogger("cartsync")
    if out is None or root.handlers != [out] or access.handlers or access.level:
        access.info(
            "request",
            extra={"method": method, "route": route, "status": status, "duration_ms": duration_ms},
        )
        return
    if not access.isEnabledFor(logging.INFO):
        return
    line = _access_enc.encode(
        {
            "time": _utc_at(time.time()),
            "level": "INFO",
            "logger": "cartsync.access",
            "message": "request",
            "request_id": request_id.get(),
            "trace_id": tracing.trace_id(),
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
        }
    )
    out.acquire()
    try:
        out.stream.write(line.decode() + "\n")
        out.stream.flush()
    finally:
        out.release()


def server_logger(fmt: str) -> logging.Logger:
    """Hypercorn's error log (start-up, shutdown, protocol errors) in the same format, for its
    ``Config.errorlog``: left to itself it writes plain lines with a local-time stamp."""
    server = logging.getLogger("hypercorn.error")
    server.handlers[:] = [handler(fmt, sys.stderr)]
    server.setLevel(logging.INFO)
    server.propagate = False
    return server


def say(message: str, level: int = logging.INFO) -> None:
    """A ``cartsync serve`` or ``worker`` message as a log line (JSON if not configured yet);
    a message that stops start-up comes at ERROR, so alerting on errors sees it."""
    cli = logging.getLogger("cartsync.cli")
    if not logging.getLogger("cartsync").handlers:
        configure("json", "INFO")
    if message.startswith("WARNING"):
        level = max(level, logging.WARNING)
    cli.log(level, message)


def handler(fmt: str, stream: TextIO) -> logging.StreamHandler[TextIO]:
    """A handler writing ``fmt`` ('json' or 'text') lines that carry the request id."""
    out = logging.StreamHandler(stream)
    out.addFilter(_RequestIdFilter())
    if fmt == "json":
        out.setFormatter(
            _JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        out.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return out


def _utc(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds and a ``Z``: sortable, and no guessing the zone."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _utc_at(when: float) -> str:
    """``_utc`` of a time.time() value (the milliseconds truncated, as ``logging`` does)."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{seconds}.{int((when - int(when)) * 1000):03d}Z"


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class _TextFormatter(logging.Formatter):
    """For people at a terminal: the stack of ``log_unexpected`` follows its line."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        stack = record.__dict__.get(_STACK)
        return f"{line}\n{stack}" if stack else line


_TYPE, _MESSAGE, _STACK = "error.type", "error.message", "error.stack_trace"


def log_unexpected(logger: logging.Logger, message: str, exc: BaseException) -> None:
    """Log an exception nothing expected as ONE line: the request id, and the exception's type,
    message and stack as fields (ECS names), so a JSON stream stays one record per line and the
    failure can be found by request id. The websocket side calls it before closing with 1011."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    logger.error(
        message,
        extra={
            _TYPE: name,
            _MESSAGE: str(exc),
            _STACK: "".join(traceback.format_exception(exc)),
        },
    )


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-Id if it is a sane one, else a fresh random 32-hex-digit id."""
    incoming = ""
    for name, value in headers:
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
    return incoming if _INCOMING_ID.fullmatch(incoming) else secrets.token_hex(16)


class RequestLogMiddleware:
    """Gives every request an id (X-Request-Id, echoed back), logs one access line and times
    HTTP requests into ``Metrics``; answers an unexpected exception with a JSON 500 itself.

    One wrapper for both, so ``send`` is wrapped once and the clock, status and route template
    are read once per request (as two middlewares they were a tenth of cartsync's own CPU).
    The 500 is answered here, inside the request's context, rather than by Starlette's
    ServerErrorMiddleware outside it: there the request id is gone, and it re-raises to
    Hypercorn, which prints a plain multi-line traceback into the JSON stream.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope["headers"])
        echo = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500
        started = False

        async def sending(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), echo]
                # Now, while the server span is open: it ends with the response's last byte.
                tracing.name_request(scope["method"], getattr(scope.get("route"), "path", None))
            await send(message)

        try:
            # A websocket's frames go straight through: only an HTTP response gets the header.
            await self.app(scope, receive, sending if kind == "http" else send)
        except Exception as exc:
            where = f"{scope.get('method', 'WEBSOCKET')} {scope.get('path', '')}"
            log_unexpected(errors, f"unhandled error on {where}", exc)
            with contextlib.suppress(Exception):  # the client may be gone; it is logged
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1011})
                elif not started:
                    # Too late for a 500 once the response started: Hypercorn then ends the
                    # stream, which the client sees as a cut-off response.
                    await _send_internal_error(sending)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if kind == "http":
                self.metrics.observe_http(scope["method"], route, status, seconds)
                log_access(scope["method"], route, status, seconds)
            else:
                log_access("WEBSOCKET", route, None, seconds)
            request_id.reset(token)


_INTERNAL_ERROR = msgspec.json.encode(
    ErrorBody(ErrorDetail(code="internal_error", message="something went wrong on our side"))
)


async def _send_internal_error(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
