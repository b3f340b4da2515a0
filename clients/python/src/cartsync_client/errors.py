"""The error tree: every failure the client raises, one class per thing a caller does differently.

    CartsyncError            base: ``status``, a stable ``code``, ``message``, optional ``field``
    ├── InvalidRequest       the request is malformed or breaks a rule (400, 413, 415, 422)
    ├── Unauthorized         the token is missing, expired or not accepted (401)
    ├── Forbidden            the token is valid but may not do this (403)
    ├── NotFound             no such line, wishlist or item, or not the caller's (404)
    ├── Conflict             the current state forbids the change right now (409)
    ├── PreconditionFailed   ``if_match`` named a revision that is no longer current (412)
    ├── RateLimited          too many requests; ``retry_after`` seconds to wait (429)
    ├── Unavailable          the service or its store cannot answer now (502-504, or status 0
    │                        when no response came back at all: refused, reset, timed out)
    └── SessionClosed        the server closed the live socket for good (1003, 1007, 1008, 1009)

Every error raised for a mutation carries the ``idempotency_key`` it was sent with: when the
outcome is unknown (``Unavailable`` with status 0), sending the same call again with that key is
applied at most once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "CartsyncError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "SessionClosed",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class CartsyncError(Exception):
    """A request the service refused or could not answer; ``status`` 0 means no HTTP answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.idempotency_key = idempotency_key


class InvalidRequest(CartsyncError):
    """The request is malformed or breaks a rule; sending it again will not help."""


class Unauthorized(CartsyncError):
    """No usable token: get a new one."""


class Forbidden(CartsyncError):
    """The token is valid, but its role may not do this (e.g. a service token on ``/v1/cart``)."""


class NotFound(CartsyncError):
    """No such line, wishlist or item; a foreign one looks the same, so ids cannot be probed."""


class Conflict(CartsyncError):
    """The state forbids the change now (a name taken, a cart being merged)."""


class PreconditionFailed(CartsyncError):
    """``if_match`` was stale: reload at ``current_rev`` and decide again."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        current_rev: int | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(status, code, message, field, idempotency_key=idempotency_key)
        self.current_rev = current_rev


class _WithRetryAfter(CartsyncError):
    """An error the server may have answered with ``Retry-After`` (seconds, or None)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(status, code, message, field, idempotency_key=idempotency_key)
        self.retry_after = retry_after


class RateLimited(_WithRetryAfter):
    """Too many requests; the client already waited and retried as often as it was allowed."""


class Unavailable(_WithRetryAfter):
    """Nothing usable came back after the allowed retries; a mutation may or may not have run."""


class SessionClosed(CartsyncError):
    """The server ended the live socket with a code that reconnecting would only repeat."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(0, f"closed_{close_code}", reason or "websocket closed")
        self.close_code = close_code
        self.reason = reason


_BY_STATUS: Mapping[int, type[CartsyncError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}

# A websocket ``nack`` carries only the error code; these are the statuses REST gives them.
_STATUS_OF_CODE: Mapping[str, int] = {
    "malformed_json": 400,
    "bad_header": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "line_not_found": 404,
    "wishlist_not_found": 404,
    "item_not_found": 404,
    "conflict": 409,
    "line_conflict": 409,
    "wishlist_name_taken": 409,
    "cart_merging": 409,
    "guest_merged": 409,
    "guest_merged_elsewhere": 409,
    "merge_not_claimed": 409,
    "collection_unavailable": 409,
    "revision_mismatch": 412,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_input": 422,
    "invalid_field": 422,
    "limit_exceeded": 422,
    "idempotency_key_reused": 422,
    "cart_empty": 422,
    "unknown_store": 422,
    "invalid_pickup": 422,
    "wishlist_protected": 422,
    "invalid_guest_token": 422,
    "unknown_op": 422,
    "rate_limited": 429,
    "store_unavailable": 503,
}

_REVISION_IN_MESSAGE = re.compile(r"revision (\d+)")


def error_for(
    status: int | None,
    code: str,
    message: str,
    field: str | None = None,
    *,
    current_rev: int | None = None,
    retry_after: float | None = None,
    idempotency_key: str | None = None,
) -> CartsyncError:
    """The exception for one error answer; ``status`` None (a websocket nack) is found by code."""
    if status is None:
        status = _STATUS_OF_CODE.get(code, 0)
    cls = _BY_STATUS.get(status, CartsyncError)
    if cls is PreconditionFailed:
        if current_rev is None:
            # Over the websocket the current revision is only in the message.
            found = _REVISION_IN_MESSAGE.search(message)
            current_rev = int(found.group(1)) if found else None
        return PreconditionFailed(
            status, code, message, field, current_rev=current_rev, idempotency_key=idempotency_key
        )
    if cls is RateLimited:
        return RateLimited(
            status, code, message, field, retry_after=retry_after, idempotency_key=idempotency_key
        )
    if cls is Unavailable:
        return Unavailable(
            status, code, message, field, retry_after=retry_after, idempotency_key=idempotency_key
        )
    return cls(status, code, message, field, idempotency_key=idempotency_key)
