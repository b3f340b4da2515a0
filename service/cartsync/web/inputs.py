"""Turning request headers, query parameters, bodies and websocket frames into typed values, or
into clear errors.

Every parser here takes plain strings or bytes, so the fuzzer (tests/reliability) drives them
directly, and raises only ``CartsyncError`` subclasses.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from cartsync.errors import InvalidInput, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from cartsync.wire import MAX_REVISION

T = TypeVar("T")

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ETAG = re.compile(r'(?:W/)?"([0-9]{1,16})"')
_DIGITS = re.compile(r"[0-9]{1,16}")
_FIELD = re.compile(r"(?:at|in) `\$\.?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_decoders: dict[type, msgspec.json.Decoder[object]] = {}


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer``; never from the URL, which logs keep."""
    return parse_bearer(request.headers.get("authorization"))


def parse_bearer(header: str | None) -> str:
    if header is None:
        raise Unauthenticated("missing Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and _DIGITS.fullmatch(declared) and int(declared) > limit:
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
    return decode_strict(raw, decoder)  # type: ignore[return-value]


def decode_strict(raw: bytes | str, decoder: msgspec.json.Decoder[T]) -> T:
    """The one JSON decode at the edge (REST bodies, websocket frames).

    msgspec lets three things through as other exceptions or silently: invalid UTF-8
    (``UnicodeDecodeError``), very deep nesting (``RecursionError``) and duplicate keys (the
    last one wins, so a client that meant the first gets something else). Codes:
    ``malformed_json`` (not JSON, or not UTF-8), ``too_deep``, ``duplicate_key`` (field: the
    key) and ``invalid_field`` (well-formed JSON that breaks the schema).
    """
    try:
        value = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        _check_json(raw)  # a schema error may stem from a broken, too deep or doubled input
        message = str(exc)
        raise InvalidInput(message, code="invalid_field", field=field_of(message)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}", code="malformed_json") from exc
    except UnicodeError as exc:
        raise InvalidInput("not valid UTF-8 JSON", code="malformed_json") from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    _check_json(raw)
    return value


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def _ignore(_: str) -> None:
    return None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


_checker = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_int=_ignore,
    parse_float=_ignore,
    parse_constant=_not_json,
)
"""Made once: ``json.loads`` with hooks builds a new decoder (and scanner) on every call."""


def _check_json(raw: bytes | str) -> None:
    """Refuse duplicate keys, and name what is wrong with input msgspec refused on schema.

    The stdlib parser, with numbers left unconverted and objects not built, is the check: about
    4 us for a typical body, and no JSON parser of our own. Bytes are decoded as ``json.loads``
    decodes them (encoding detected, a UTF-8 BOM allowed), and a str with a BOM is refused as
    it refuses it.
    """
    try:
        if isinstance(raw, bytes):
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        elif raw.startswith("\ufeff"):
            raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
        else:
            text = raw
        _checker.decode(text)
    except _DuplicateKey as dup:
        key = dup.key[:128]  # an error body need not echo a 60 KB key
        raise InvalidInput(
            f"the key {key!r} appears twice in one object", code="duplicate_key", field=key
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInput(f"not valid JSON: {exc}", code="malformed_json") from None


def _too_deep() -> InvalidInput:
    return InvalidInput("JSON nested too deeply", code="too_deep")


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
    return parse_idempotency_key(request.headers.get("idempotency-key"))


def parse_idempotency_key(raw: str | None) -> str | None:
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
    return parse_if_match(request.headers.get("if-match"))


def parse_if_match(raw: str | None) -> int | None:
    """Only ``"N"``, ``W/"N"`` and ``*``: a lone quote or a bare number is a client bug, not a
    revision to guess at."""
    if raw is None or raw.strip() == "*":
        return None
    match = _ETAG.fullmatch(raw.strip())
    if match is None or int(match.group(1)) > MAX_REVISION:
        raise InvalidInput(
            f'If-Match must be an ETag like "12" (at most {MAX_REVISION}) or *',
            code="bad_header",
            field="If-Match",
        )
    return int(match.group(1))


def query_int(raw: str | None, name: str, default: int) -> int:
    """A non-negative query parameter of ASCII digits, at most ``MAX_REVISION``, so a ``since``
    reaches the scripts as an exact integer (``str.isdigit`` also takes '²', which ``int``
    refuses)."""
    if raw is None:
        return default
    if _DIGITS.fullmatch(raw) is None or int(raw) > MAX_REVISION:
        raise InvalidInput(
            f"{name} must be an integer from 0 to {MAX_REVISION}", code="invalid_field", field=name
        )
    return int(raw)
