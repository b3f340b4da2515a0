"""Turning request headers and bodies into typed values, or into clear errors."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from cartsync.errors import InvalidInput, PayloadTooLarge, Unauthenticated, UnsupportedMediaType

T = TypeVar("T")

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ETAG = re.compile(r'(?:W/)?"?(\d{1,18})"?')
_FIELD = re.compile(r"(?:at|in) `\$\.?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_decoders: dict[type, msgspec.json.Decoder[object]] = {}


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer``; never from the URL, which logs keep."""
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthenticated("missing Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(raw: bytes, content_type: str | None, type_: type[T]) -> T:
    """Decode a JSON body into ``type_``; an empty body means ``{}`` (all defaults)."""
    if raw.strip():
        media = (content_type or "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType("send the body as application/json", field="Content-Type")
    else:
        raw = b"{}"
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(raw)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc), code="invalid_field", field=field_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", code="malformed_json") from exc


def field_of(message: str) -> str | None:
    unknown = _UNKNOWN.search(message)
    if unknown:
        return unknown.group(1)
    at = _FIELD.search(message)
    if at and at.group(1):
        return at.group(1)
    if "missing required field" in message:
        missing = re.search(r"field `([^`]*)`", message)
        return missing.group(1) if missing else None
    return None


def idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if IDEMPOTENCY_KEY.fullmatch(raw) is None:
        raise InvalidInput(
            "Idempotency-Key must be 1-255 visible ASCII characters",
            code="bad_header",
            field="Idempotency-Key",
        )
    return raw


def expected_revision(request: Request) -> int | None:
    """The revision from ``If-Match: "<rev>"``; ``*`` or no header means unconditional."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    match = _ETAG.fullmatch(raw.strip())
    if match is None:
        raise InvalidInput(
            'If-Match must be an ETag like "12"', code="bad_header", field="If-Match"
        )
    return int(match.group(1))
