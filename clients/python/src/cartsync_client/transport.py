"""One REST call with bounded, safe retries, and the mapping of error answers to exceptions.

A retry is sent only when the request either never reached the service (refused, reset, timed
out) or the service said to come back (429, 503). Other 4xx answers are final: sending the same
request again would be refused the same way. Mutations carry an Idempotency-Key, the same on
every retry of one call, so a retry after a lost response is replayed by the service rather than
applied twice. A 401 asks the token provider (if any) for a new token and sends the request
once more, with the same key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
import msgspec

from cartsync_client.backoff import Backoff, parse_retry_after
from cartsync_client.errors import CartsyncError, Unavailable, error_for
from cartsync_client.tokens import TokenSource

__all__ = ["Transport"]

T = TypeVar("T")

USER_AGENT = "cartsync-client-python/1.0"
RETRY_STATUSES = frozenset({429, 503})
# Transport failures worth another try. Not UnsupportedProtocol or LocalProtocolError: those are
# this client's mistakes and would fail again.
RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


class _ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


_error_body = msgspec.json.Decoder(_ErrorBody)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    """One decoder per response type, made on first use."""
    found = _decoders.get(type_)
    if found is None:
        found = _decoders[type_] = msgspec.json.Decoder(type_)
    return found


class Transport:
    """The one ``httpx.AsyncClient`` of a client, and the retry policy around it."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        retries: int,
        backoff: Backoff,
        tokens: TokenSource | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.retries = retries
        self.backoff = backoff
        self.tokens = tokens
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        response: type[T],
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, int] | None = None,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> T:
        """Send one request, retrying as the module says, and decode the answer into ``response``.

        Every request but a GET is given an Idempotency-Key (``idempotency_key`` or a new uuid4),
        sent unchanged on each retry and after a token refresh.
        """
        headers: dict[str, str] = {}
        key: str | None = None
        if method != "GET":
            key = idempotency_key or uuid.uuid4().hex
            headers["Idempotency-Key"] = key
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        content: bytes | None = None
        if body is not None:
            content = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        attempt = 0
        refreshed = False
        if self.tokens is not None:
            headers["Authorization"] = f"Bearer {await self.tokens.token()}"
        while True:
            try:
                answer = await self.http.request(
                    method, path, content=content, headers=headers, params=query
                )
            except RETRY_EXCEPTIONS as exc:
                if attempt >= self.retries:
                    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
                    message = f"no answer from the service: {type(exc).__name__}: {exc}"
                    raise Unavailable(0, code, message, idempotency_key=key) from exc
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            if answer.status_code < 400:
                return _decoder(response).decode(answer.content)
            error = _error_of(answer, key)
            if answer.status_code == 401 and self.tokens is not None and not refreshed:
                refreshed = True
                refused = headers["Authorization"].removeprefix("Bearer ")
                fresh = await self.tokens.refresh(refused)
                if fresh is not None:
                    headers["Authorization"] = f"Bearer {fresh}"
                    continue
            if answer.status_code in RETRY_STATUSES and attempt < self.retries:
                retry_after = parse_retry_after(answer.headers.get("retry-after"))
                # A wait longer than the backoff cap is the caller's to decide, not ours to hide.
                if retry_after is None or retry_after <= self.backoff.cap:
                    await asyncio.sleep(self.backoff.delay(attempt, retry_after))
                    attempt += 1
                    continue
            raise error


def _error_of(answer: httpx.Response, key: str | None) -> CartsyncError:
    """The exception for an error answer, from its ``{"error": {...}}`` body and headers."""
    try:
        detail = _error_body.decode(answer.content).error
        code, message, field = detail.code, detail.message, detail.field
    except msgspec.MsgspecError:
        # Not ours: a proxy or load balancer answered.
        code, message, field = f"http_{answer.status_code}", answer.text[:200], None
    etag = answer.headers.get("etag", "").strip().removeprefix("W/").strip('"')
    return error_for(
        answer.status_code,
        code,
        message,
        field,
        current_rev=int(etag) if etag.isdigit() else None,
        retry_after=parse_retry_after(answer.headers.get("retry-after")),
        idempotency_key=key,
    )
