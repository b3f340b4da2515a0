"""Bearer tokens (JWT) in, ``Principal`` out; and signed tokens out, for guests and the CLI.

Algorithms are pinned per key (RFC 8725): HS256 for the shared secrets, RS256 or ES256 for JWKS
keys by their ``kty``. The token's header only picks a key by ``kid``; its ``alg`` must then
equal the one pinned to that key.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cachetools import TTLCache

from cartsync.auth.claims import OWN_CLAIMS
from cartsync.auth.jwks import RemoteKeys
from cartsync.auth.providers import Provider
from cartsync.domain.principal import Principal, Role, valid_subject
from cartsync.errors import Unauthenticated
from cartsync.settings import Settings, SettingsError

HS_ALGORITHM = "HS256"
PINNED_BY_KTY = {"RSA": "RS256", "EC": "ES256"}
"""The one algorithm accepted for each JWKS key type; any other key in the file is refused."""

DEV_KEY_FILE = "dev-jwt-secret"
DEV_KID = "dev"
MAX_TOKEN_CHARS = 8192
"""Longer bearer strings are refused before any parsing work is spent on them."""
VERIFIED_CACHE_SIZE = 10_000
VERIFIED_CACHE_TTL_S = 300

_REQUIRED_CLAIMS = ["exp", "sub", "role", "aud", "iss"]
_REQUIRED_FROM_PROVIDERS = ["exp", "aud", "iss"]
"""A provider's subject and role claims are wherever its claim map says; it names them."""

_FAILURES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    # Order matters: InvalidSignatureError is a DecodeError, so it must come first.
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token has the wrong audience"),
    (jwt.InvalidIssuerError, "token has the wrong issuer"),
    (jwt.InvalidSignatureError, "token has a bad signature"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed for its key"),
    (jwt.DecodeError, "token is malformed"),
)


@dataclass(frozen=True)
class TokenKeys:
    """Every key tokens may be signed with, by kid; the first HS secret signs what we issue."""

    hmac: Mapping[str, bytes] = field(default_factory=dict)
    public: Mapping[str, jwt.PyJWK] = field(default_factory=dict)
    development: bool = False

    def __post_init__(self) -> None:
        clash = set(self.hmac) & set(self.public)
        if clash:
            raise SettingsError(f"kid used by both a JWT secret and a JWKS key: {sorted(clash)}")

    @property
    def signing_kid(self) -> str | None:
        """The kid of the secret new tokens are signed with, or None in JWKS-only setups."""
        return next(iter(self.hmac), None)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenKeys:
        """Configured secrets and JWKS keys, else the development secret under data_dir."""
        hmac = {kid: str(secret).encode() for kid, secret in settings.jwt_secrets.items()}
        public = _load_jwks(settings.jwt_jwks_file) if settings.jwt_jwks_file else {}
        if hmac or public:
            return cls(hmac=hmac, public=public)
        secret = _development_secret(settings.data_dir / DEV_KEY_FILE)
        return cls(hmac={DEV_KID: secret}, development=True)


def _load_jwks(path: Path) -> dict[str, jwt.PyJWK]:
    """Public keys by kid, each pinned to the one algorithm its kty allows."""
    name = "CARTSYNC_JWT_JWKS_FILE"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        keyset = jwt.PyJWKSet.from_dict(document)
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    except (ValueError, AttributeError, jwt.PyJWTError) as exc:
        raise SettingsError(f"{name}: {path} is not a usable JWK Set: {exc}") from exc
    if len(keyset.keys) != len(document["keys"]):
        # PyJWKSet skips keys it cannot use; a key that silently vanished would be a riddle later.
        raise SettingsError(f"{name}: {path} holds keys PyJWT cannot use (kty/alg/crv)")
    keys: dict[str, jwt.PyJWK] = {}
    for key in keyset:
        pinned = PINNED_BY_KTY.get(key.key_type or "")
        if pinned is None:
            raise SettingsError(
                f"{name}: key {key.key_id!r} has kty {key.key_type!r}; "
                "only RSA (RS256) and EC P-256 (ES256) keys are accepted"
            )
        if key.algorithm_name != pinned:
            raise SettingsError(
                f"{name}: key {key.key_id!r} is for {key.algorithm_name}; "
                f"a {key.key_type} key must be used with {pinned}"
            )
        if not key.key_id or key.key_id in keys:
            raise SettingsError(f"{name}: every key needs its own kid ({key.key_id!r})")
        if hasattr(key.key, "private_bytes"):
            raise SettingsError(f"{name}: key {key.key_id!r} is private; list public keys only")
        too_short = key.Algorithm.check_key_length(key.key)
        if too_short:
            raise SettingsError(f"{name}: key {key.key_id!r}: {too_short}")
        keys[key.key_id] = key
    return keys


def _development_secret(path: Path) -> bytes:
    """Read the local development secret, creating it (mode 0600) on first use."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-jwt-secret.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
            out.flush()
            os.fsync(out.fileno())
        # link() refuses to replace: when two processes race, both end up reading the winner's.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_text(encoding="ascii").strip().encode()
    if len(secret) < 32:
        raise SettingsError(f"{path}: the development JWT secret is shorter than 32 characters")
    return secret


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises Unauthenticated saying why.

    cartsync's own tokens (guests, the CLI, HS secrets or a JWKS file or URL) carry
    ``iss = CARTSYNC_JWT_ISSUER``; an identity provider's carry its own ``iss``, which picks
    that provider's keys, audience and claim map. The unverified ``iss`` only chooses where to
    look; the signature check then requires the same issuer.
    """

    def __init__(
        self,
        keys: TokenKeys,
        settings: Settings,
        providers: Mapping[str, Provider] | None = None,
    ) -> None:
        self._keys = keys
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_s
        self._providers = dict(providers or {})
        self._own = self._providers.pop(self._issuer, None)
        """Keys of our own issuer fetched from CARTSYNC_JWT_JWKS_URL, if set."""
        # A device sends the same token with every request; checking its signature each time
        # was a tenth of a mutation's CPU. Only tokens that verified are kept, never past
        # their own expiry, for at most VERIFIED_CACHE_TTL_S, and only while no fetched key
        # set has retired or replaced a key since (the generation they were verified at).
        self._verified: TTLCache[str, tuple[Principal, float, int]] = TTLCache(
            maxsize=VERIFIED_CACHE_SIZE, ttl=VERIFIED_CACHE_TTL_S
        )
        self._remote = self.remote

    @property
    def remote(self) -> list[RemoteKeys]:
        """Every key set fetched over HTTP (for readiness and start/stop)."""
        found = [p.keys for p in self._providers.values()]
        return found if self._own is None else [self._own.keys, *found]

    async def verify(self, token: str) -> Principal:
        """Check signature, algorithm, time window, audience, issuer and the claims."""
        principal, _ = await self.verify_until(token)
        return principal

    async def verify_until(self, token: str) -> tuple[Principal, float]:
        """``verify``, and until when (Unix time) the token stays acceptable."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("token is missing or too long")
        generation = sum(keys.generation for keys in self._remote)
        hit = self._verified.get(token)
        if hit is not None and time.time() < hit[1] and hit[2] == generation:
            return hit[0], hit[1]
        principal, until = await self._verify(token)
        self._verified[token] = (principal, until, generation)
        return principal, until

    @property
    def remembered(self) -> int:
        """How many verified tokens are remembered now (at most VERIFIED_CACHE_SIZE)."""
        return len(self._verified)

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            kid = header.get("kid")
            provider = self._providers.get(issuer) if isinstance(issuer, str) else None
            key: bytes | jwt.PyJWK
            if provider is not None:
                key, algorithm = await provider.keys.key_for(kid)
                audience, claim_map = provider.audience, provider.claims
                required = _REQUIRED_FROM_PROVIDERS
            else:
                key, algorithm = await self._own_key_for(kid)
                audience, claim_map, issuer = self._audience, OWN_CLAIMS, self._issuer
                required = _REQUIRED_CLAIMS
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=self._leeway,
                options={"require": required, "strict_aud": False},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_describe(exc)) from None
        return claim_map.principal(claims), float(claims["exp"]) + self._leeway

    async def _own_key_for(self, kid: object) -> tuple[bytes | jwt.PyJWK, str]:
        """The key the kid names, with the algorithm pinned to it; header alg plays no part."""
        if kid is None:
            if len(self._keys.hmac) == 1 and not self._keys.public and self._own is None:
                return next(iter(self._keys.hmac.values())), HS_ALGORITHM
            raise Unauthenticated("token has no kid header")
        if isinstance(kid, str):
            if kid in self._keys.hmac:
                return self._keys.hmac[kid], HS_ALGORITHM
            if kid in self._keys.public:
                public = self._keys.public[kid]
                return public, public.algorithm_name
        if self._own is not None:
            return await self._own.keys.key_for(kid)
        raise Unauthenticated("token signed with an unknown key (kid)")


def _describe(exc: jwt.PyJWTError) -> str:
    """A fixed message per failure: PyJWT's own text may quote parts of the token."""
    for kind, message in _FAILURES:
        if isinstance(exc, kind):
            return message
    return "token is invalid"


class TokenIssuer:
    """Signs tokens with the first HS secret: guest tokens, and tokens for local use via the CLI."""

    def __init__(self, keys: TokenKeys, settings: Settings) -> None:
        kid = keys.signing_kid
        if kid is None:
            raise ValueError("no JWT secret configured (CARTSYNC_JWT_SECRETS): cannot issue tokens")
        self._kid = kid
        self._secret = keys.hmac[kid]
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def issue(self, role: Role, subject: str, *, store: str | None = None, ttl_s: int) -> str:
        """A signed token that TokenVerifier built from the same keys and settings accepts."""
        if not valid_subject(subject):
            raise ValueError("subject must match [A-Za-z0-9._@:|+-]{1,128}")
        if ttl_s <= 0:
            raise ValueError("the token lifetime must be positive")
        if role is Role.STAFF and not store:
            raise ValueError("staff tokens need a store")
        if role is not Role.STAFF and store is not None:
            raise ValueError("only staff tokens carry a store")
        if store is not None and not valid_subject(store):
            raise ValueError("store must match [A-Za-z0-9._@:|+-]{1,128}")
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "role": role.value,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "aud": self._audience,
            "iss": self._issuer,
            "jti": secrets.token_urlsafe(16),
        }
        if store is not None:
            claims["store"] = store
        return jwt.encode(claims, self._secret, algorithm=HS_ALGORITHM, headers={"kid": self._kid})


def new_guest_subject() -> str:
    """A fresh guest id that cannot collide with, or be guessed from, any other."""
    return "g_" + secrets.token_hex(16)
