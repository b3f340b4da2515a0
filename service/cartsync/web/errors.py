"""The one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cartsync.errors import (
    CartsyncError,
    Conflict,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RevisionMismatch,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from cartsync.web.logs import log_unexpected
from cartsync.wire import ErrorBody, ErrorDetail

log = logging.getLogger("cartsync.web")

STATUS: dict[type[CartsyncError], int] = {
    InvalidInput: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RevisionMismatch: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    IdempotencyKeyReused: 422,
    RateLimited: 429,
    StoreUnavailable: 503,
}

BAD_REQUEST_CODES = frozenset({"malformed_json", "too_deep", "duplicate_key", "bad_header"})
"""Codes of requests that cannot be read at all: 400, where a readable one that breaks a rule
is 422."""

_encoder = msgspec.json.Encoder()


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = _encoder.encode(ErrorBody(ErrorDetail(code=code, message=message, field=field)))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def status_of(exc: CartsyncError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _unread_body(request: Request) -> bool:
    """A refusal sent before the body was read: Hypercorn then drops the connection, so say so
    (``Connection: close``) rather than let the client's next request on it fail."""
    if getattr(request.state, "body_read", False):
        return False
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


async def on_cartsync_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CartsyncError)
    status = 400 if exc.code in BAD_REQUEST_CODES else status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, StoreUnavailable):
        headers["Retry-After"] = "1"
    elif isinstance(exc, RevisionMismatch):
        headers["ETag"] = f'"{exc.current_rev}"'
    elif isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="cartsync"'
    if _unread_body(request):
        headers["Connection"] = "close"
    return error_response(status, exc.code, exc.message, exc.field, headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "route_not_found", 405: "method_not_allowed"}
    message = {404: "no such route", 405: "method not allowed on this route"}.get(
        exc.status_code, str(exc.detail)
    )
    headers = dict(exc.headers or {})
    if _unread_body(request):
        headers["Connection"] = "close"
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), message, headers=headers
    )


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """Only for a failure outside RequestLogMiddleware (which answers every other 500 itself)."""
    log_unexpected(log, f"unhandled error on {request.method} {request.url.path}", exc)
    return error_response(500, "internal_error", "something went wrong on our side")
