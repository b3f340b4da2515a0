"""An identity provider's signing keys, fetched over HTTP and kept current.

The keys come from a JWKS URL, or from the ``jwks_uri`` of the issuer's OpenID discovery
document. They are fetched at start (in the background: a provider that is down does not stop
cartsync, it only keeps it not ready), again every ``refresh_s``, and when a token names a kid
we do not have, but at most once per ``min_refresh_s``: a flood of made-up kids costs the
provider one request a minute. A failed fetch keeps the keys we have.

Each key is pinned to one algorithm (RFC 8725): its JWK ``alg`` if that is one we accept,
else the one its type implies. Encryption keys are skipped; a set with private key material
is refused whole, since whoever publishes it has leaked it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

import httpx
import jwt

from cartsync.errors import Unauthenticated

log = logging.getLogger("cartsync.auth")

ACCEPTED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
_IMPLIED = {("RSA", None): "RS256", ("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA"}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_DOCUMENT_BYTES = 1 << 20


class KeySetRefused(ValueError):
    """The provider's answer is not a key set we can use."""


class RemoteKeys:
    """One issuer's public keys by kid, each with its pinned algorithm."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        issuer: str,
        jwks_url: str | None,
        *,
        min_refresh_s: float = 60.0,
        refresh_s: float = 900.0,
    ) -> None:
        self.issuer = issuer
        self._http = http
        self._jwks_url = jwks_url
        self._discovered: str | None = None
        self._min_refresh_s = min_refresh_s
        self._refresh_s = refresh_s
        self._keys: dict[str, tuple[jwt.PyJWK, str]] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()
        self.fetches = 0
        self.last_error: str | None = None
        self.generation = 0
        """Counts the fetches that retired or replaced a key: tokens verified before with a
        key of this set are checked again (TokenVerifier remembers verified tokens)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_current(), name=f"jwks {self.issuer}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def key_for(self, kid: object) -> tuple[jwt.PyJWK, str]:
        """The key ``kid`` names and its algorithm; fetches once more if it is new to us."""
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise Unauthenticated("token has no kid header")
        if not isinstance(kid, str):
            raise Unauthenticated("token signed with an unknown key (kid)")
        found = self._keys.get(kid)
        if found is None and time.monotonic() - self._fetched_at >= self._min_refresh_s:
            await self.refresh()
            found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated("token signed with an unknown key (kid)")
        return found

    async def refresh(self) -> None:
        """Fetch the key set once; concurrent callers share the one fetch."""
        asked = time.monotonic()
        async with self._lock:
            if self._fetched_at >= asked:
                return  # someone fetched while we waited
            self._fetched_at = time.monotonic()
            self.fetches += 1
            try:
                keys = parse_key_set(await self._get(await self._key_set_url()))
            except (httpx.HTTPError, KeySetRefused) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "keys of issuer %s not fetched (%s); %s",
                    self.issuer,
                    self.last_error,
                    f"keeping the {len(self._keys)} known keys"
                    if self.loaded.is_set()
                    else "not ready until they load",
                )
                return
            if not all(_same(known, keys.get(kid)) for kid, known in self._keys.items()):
                self.generation += 1
            self._keys = keys
            self.last_error = None
            if not self.loaded.is_set():
                log.info("keys of issuer %s loaded: %s", self.issuer, ", ".join(sorted(keys)))
            self.loaded.set()

    async def _keep_current(self) -> None:
        backoff = 1.0
        while True:
            await self.refresh()
            if self.loaded.is_set() and self.last_error is None:
                backoff = 1.0
                await asyncio.sleep(self._refresh_s)
            else:
                await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
                backoff = min(backoff * 2, 30.0)

    async def _key_set_url(self) -> str:
        if self._jwks_url is not None:
            return self._jwks_url
        if self._discovered is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = await self._get(url)
            if document.get("issuer") != self.issuer:
                raise KeySetRefused(
                    f"discovery document names issuer {document.get('issuer')!r}, "
                    f"not {self.issuer!r}"
                )
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise KeySetRefused("discovery document has no http(s) jwks_uri")
            self._discovered = jwks_uri
        return self._discovered

    async def _get(self, url: str) -> dict[str, Any]:
        # No redirects (httpx's default): a key set is fetched from where it was configured.
        async with self._http.stream("GET", url, headers={"Accept": "application/json"}) as r:
            if r.status_code != 200:
                raise KeySetRefused(f"{url} answered {r.status_code}")
            body = b""
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise KeySetRefused(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise KeySetRefused(f"{url} did not answer JSON") from exc
        if not isinstance(document, dict):
            raise KeySetRefused(f"{url} did not answer a JSON object")
        return document


def _same(known: tuple[jwt.PyJWK, str], fetched: tuple[jwt.PyJWK, str] | None) -> bool:
    """The fetched set still holds this key, for the same algorithm."""
    return fetched is not None and fetched[1] == known[1] and fetched[0].key == known[0].key


def parse_key_set(document: dict[str, Any]) -> dict[str, tuple[jwt.PyJWK, str]]:
    """Signing keys by kid with their pinned algorithm; refuses private material."""
    listed = document.get("keys")
    if not isinstance(listed, list):
        raise KeySetRefused("the key set has no 'keys' list")
    keys: dict[str, tuple[jwt.PyJWK, str]] = {}
    for entry in listed:
        if not isinstance(entry, dict):
            raise KeySetRefused("a key set entry is not an object")
        if _PRIVATE_MEMBERS & set(entry):
            raise KeySetRefused(f"key {entry.get('kid')!r} holds private key material")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key, published beside the signing keys (Keycloak does)
        algorithm = _pinned(entry)
        kid = entry.get("kid")
        if algorithm is None or not isinstance(kid, str) or not kid or kid in keys:
            log.info("key %r skipped: no usable algorithm, no kid, or a repeated kid", kid)
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=algorithm)
        except jwt.PyJWTError as exc:
            log.info("key %r skipped: %s", kid, exc)
            continue
        too_short = key.Algorithm.check_key_length(key.key)
        if too_short:
            log.info("key %r skipped: %s", kid, too_short)
            continue
        keys[kid] = (key, algorithm)
    if not keys:
        raise KeySetRefused(
            "the key set holds no signing key cartsync accepts (RS256, ES256, EdDSA)"
        )
    return keys


def _pinned(entry: dict[str, Any]) -> str | None:
    declared = entry.get("alg")
    if declared is not None:
        return declared if declared in ACCEPTED_ALGORITHMS else None
    kty, crv = entry.get("kty"), entry.get("crv")
    if not isinstance(kty, str) or not (crv is None or isinstance(crv, str)):
        return None
    return _IMPLIED.get((kty, None if kty == "RSA" else crv))
