"""Tokens in, Principal out: every way a token can be wrong is refused, and says why."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cartsync.auth.tokens import (
    VERIFIED_CACHE_SIZE,
    TokenIssuer,
    TokenKeys,
    TokenVerifier,
    new_guest_subject,
)
from cartsync.domain.principal import Principal, Role
from cartsync.errors import Unauthenticated
from cartsync.settings import Settings, SettingsError

SECRET = "current-secret-" + "c" * 32
OLD_SECRET = "previous-secret-" + "p" * 32
OTHER_SECRET = "someone-elses-secret-" + "o" * 32
LEEWAY = 30


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {"CARTSYNC_DATA_DIR": str(tmp_path / "data"), "CARTSYNC_JWT_LEEWAY_SECONDS": "30"}
    return Settings.from_env({**base, **{f"CARTSYNC_{k.upper()}": v for k, v in env.items()}})


def claims(*, drop: tuple[str, ...] = (), **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "customer",
        "aud": "cartsync",
        "iss": "cartsync",
        "iat": now,
        "nbf": now,
        # A day: the parametrized cases are built when the suite is collected, and may run
        # many minutes later in a full run.
        "exp": now + 86_400,
    }
    base.update(over)
    return {k: v for k, v in base.items() if k not in drop}


def hs256(payload: dict[str, Any], secret: str = SECRET, kid: str | None = "k1") -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid} if kid else None)


async def rejected(verifier: TokenVerifier, token: str) -> str:
    """The refusal message, checked never to quote the token."""
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    message = caught.value.message
    for part in token.split("."):
        assert len(part) < 8 or part not in message
    return message


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, jwt_secrets=f"k1:{SECRET}")


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(TokenKeys.from_settings(settings), settings)


@pytest.mark.parametrize(
    ("role", "store"),
    [(Role.CUSTOMER, None), (Role.GUEST, None), (Role.STAFF, "store-7"), (Role.SERVICE, None)],
)
async def test_issued_token_verifies_for_each_role(
    settings: Settings, verifier: TokenVerifier, role: Role, store: str | None
) -> None:
    issuer = TokenIssuer(TokenKeys.from_settings(settings), settings)
    token = issuer.issue(role, "who-1", store=store, ttl_s=60)
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert await verifier.verify(token) == Principal(role, "who-1", store)


async def test_store_claim_on_a_customer_token_is_ignored(verifier: TokenVerifier) -> None:
    assert await verifier.verify(hs256(claims(store="s1"))) == Principal(Role.CUSTOMER, "alice")


async def test_times_within_leeway_are_accepted(verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = hs256(claims(nbf=now + LEEWAY // 2, exp=now - LEEWAY // 2))
    assert (await verifier.verify(token)).subject == "alice"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=int(time.time()) - LEEWAY - 5), "expired"),
        (claims(nbf=int(time.time()) + LEEWAY + 3600), "not yet valid"),
        (claims(iat=int(time.time()) + LEEWAY + 3600), "not yet valid"),
        (claims(aud="another-service"), "audience"),
        (claims(iss="someone-else"), "issuer"),
        (claims(role="staff"), "store"),
        (claims(role="staff", store=""), "store"),
        (claims(role="staff", store=7), "store"),
        (claims(sub="a{b}"), "subject"),
        (claims(sub=42), "token"),
        (claims(drop=("role",)), "'role'"),
        (claims(role="admin"), "role"),
        (claims(role=["customer"]), "role"),
        (claims(drop=("exp",)), "'exp'"),
        (claims(drop=("aud",)), "'aud'"),
        (claims(drop=("iss",)), "'iss'"),
        (claims(drop=("sub",)), "'sub'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_bad_claims_are_refused(
    verifier: TokenVerifier, payload: dict[str, Any], reason: str
) -> None:
    assert reason in await rejected(verifier, hs256(payload))


async def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), "", algorithm="none", headers={"kid": "k1"})
    assert "algorithm" in await rejected(verifier, token)


async def test_other_secret_is_a_bad_signature(verifier: TokenVerifier) -> None:
    assert "signature" in await rejected(verifier, hs256(claims(), OTHER_SECRET))


async def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    assert "unknown key" in await rejected(verifier, hs256(claims(), kid="k9"))


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "a" * 9000, "e30.e30.e30"])
async def test_garbage_is_refused(verifier: TokenVerifier, token: str) -> None:
    await rejected(verifier, token)


async def test_token_without_kid_only_with_a_single_secret(tmp_path: Path) -> None:
    one = make_settings(tmp_path, jwt_secrets=f"k1:{SECRET}")
    assert await TokenVerifier(TokenKeys.from_settings(one), one).verify(hs256(claims(), kid=None))
    two = make_settings(tmp_path, jwt_secrets=f"k1:{SECRET},k0:{OLD_SECRET}")
    assert "kid" in await rejected(
        TokenVerifier(TokenKeys.from_settings(two), two), hs256(claims(), kid=None)
    )


async def test_rotation_keeps_old_kid_valid_while_listed(tmp_path: Path) -> None:
    before = make_settings(tmp_path, jwt_secrets=f"old:{OLD_SECRET}")
    old_token = TokenIssuer(TokenKeys.from_settings(before), before).issue(
        Role.CUSTOMER, "alice", ttl_s=60
    )
    during = make_settings(tmp_path, jwt_secrets=f"new:{SECRET},old:{OLD_SECRET}")
    keys = TokenKeys.from_settings(during)
    assert keys.signing_kid == "new"
    verifier = TokenVerifier(keys, during)
    assert (await verifier.verify(old_token)).subject == "alice"
    new_token = TokenIssuer(keys, during).issue(Role.CUSTOMER, "bob", ttl_s=60)
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    assert (await verifier.verify(new_token)).subject == "bob"
    after = make_settings(tmp_path, jwt_secrets=f"new:{SECRET}")
    assert "unknown key" in await rejected(
        TokenVerifier(TokenKeys.from_settings(after), after), old_token
    )


# --- JWKS: RS256 and ES256 public keys ------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_jwks(path: Path, *jwks: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(jwks)}))
    return path


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid}


@pytest.fixture
def jwks_settings(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> Settings:
    path = write_jwks(
        tmp_path / "jwks.json", public_jwk(rsa_key, "rsa1"), public_jwk(ec_key, "ec1")
    )
    return make_settings(tmp_path, jwt_jwks_file=str(path), jwt_secrets=f"k1:{SECRET}")


@pytest.fixture
def jwks_verifier(jwks_settings: Settings) -> TokenVerifier:
    return TokenVerifier(TokenKeys.from_settings(jwks_settings), jwks_settings)


async def test_rs256_and_es256_tokens_verify(
    jwks_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rs = jwt.encode(claims(sub="rs"), rsa_key, algorithm="RS256", headers={"kid": "rsa1"})
    es = jwt.encode(claims(sub="es"), ec_key, algorithm="ES256", headers={"kid": "ec1"})
    assert await jwks_verifier.verify(rs) == Principal(Role.CUSTOMER, "rs")
    assert await jwks_verifier.verify(es) == Principal(Role.CUSTOMER, "es")
    assert (await jwks_verifier.verify(hs256(claims(sub="hs")))).subject == "hs"


async def test_header_alg_cannot_switch_a_key_to_another_algorithm(
    jwks_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    rs512 = jwt.encode(claims(), rsa_key, algorithm="RS512", headers={"kid": "rsa1"})
    assert "algorithm" in await rejected(jwks_verifier, rs512)
    rs_on_ec_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec1"})
    assert "algorithm" in await rejected(jwks_verifier, rs_on_ec_kid)
    es_on_hs_kid = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "k1"})
    assert "algorithm" in await rejected(jwks_verifier, es_on_hs_kid)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_algorithm_confusion_with_the_public_key_as_hmac_secret(
    jwks_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    # PyJWT refuses to HMAC-sign with a PEM key, which is the point; an attacker signs by hand.
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}).encode())
    payload = b64url(json.dumps(claims(role="service")).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64url(signature)}"
    assert "algorithm" in await rejected(jwks_verifier, forged)


async def test_jwks_only_setup_verifies_but_cannot_issue(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key, "rsa1"))
    settings = make_settings(tmp_path, jwt_jwks_file=str(path))
    keys = TokenKeys.from_settings(settings)
    assert not keys.development
    assert not (tmp_path / "data" / "dev-jwt-secret").exists()
    with pytest.raises(ValueError, match="cannot issue"):
        TokenIssuer(keys, settings)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa1"})
    assert (await TokenVerifier(keys, settings).verify(token)).subject == "alice"


def test_unusable_jwks_files_stop_start_up(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    private = {**RSAAlgorithm.to_jwk(rsa_key, as_dict=True), "kid": "leaked"}
    symmetric = {"kty": "oct", "k": b64url(SECRET.encode()), "kid": "oct1"}
    p384 = public_jwk(ec.generate_private_key(ec.SECP384R1()), "ec384")
    no_kid = {k: v for k, v in public_jwk(rsa_key, "x").items() if k != "kid"}
    clash = public_jwk(rsa_key, "k1")
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak = public_jwk(weak_key, "weak")
    for bad in (private, symmetric, p384, no_kid, clash, weak):
        path = write_jwks(tmp_path / "jwks.json", bad)
        settings = make_settings(tmp_path, jwt_jwks_file=str(path), jwt_secrets=f"k1:{SECRET}")
        with pytest.raises(SettingsError, match=r"JWKS|JWT_JWKS_FILE"):
            TokenKeys.from_settings(settings)
    missing = make_settings(tmp_path, jwt_jwks_file=str(tmp_path / "nope.json"))
    with pytest.raises(SettingsError, match="cannot read"):
        TokenKeys.from_settings(missing)


# --- development fallback --------------------------------------------------------------------


async def test_development_secret_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = TokenKeys.from_settings(settings)
    path = tmp_path / "data" / "dev-jwt-secret"
    assert first.development
    assert first.signing_kid == "dev"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 64
    assert os.listdir(path.parent) == ["dev-jwt-secret"]

    second = TokenKeys.from_settings(settings)
    assert second.hmac == first.hmac
    token = TokenIssuer(first, settings).issue(Role.GUEST, new_guest_subject(), ttl_s=60)
    assert (await TokenVerifier(second, settings).verify(token)).role is Role.GUEST

    elsewhere = make_settings(tmp_path / "other")
    assert TokenKeys.from_settings(elsewhere).hmac != first.hmac


def test_configured_secrets_never_touch_the_data_dir(settings: Settings) -> None:
    assert not TokenKeys.from_settings(settings).development
    assert not settings.data_dir.exists()


# --- issuing ---------------------------------------------------------------------------------


def test_issued_claims(settings: Settings) -> None:
    issuer = TokenIssuer(TokenKeys.from_settings(settings), settings)
    before = int(time.time())
    token = issuer.issue(Role.STAFF, "clerk", store="s1", ttl_s=120)
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["sub"] == "clerk"
    assert body["role"] == "staff"
    assert body["store"] == "s1"
    assert body["aud"] == settings.jwt_audience
    assert body["iss"] == settings.jwt_issuer
    assert before <= body["iat"] == body["nbf"] <= body["exp"] - 120
    assert len(body["jti"]) >= 16
    other = issuer.issue(Role.STAFF, "clerk", store="s1", ttl_s=120)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != body["jti"]


@pytest.mark.parametrize(
    ("role", "subject", "store", "ttl_s"),
    [
        (Role.CUSTOMER, "a{b}", None, 60),
        (Role.CUSTOMER, "", None, 60),
        (Role.STAFF, "clerk", None, 60),
        (Role.STAFF, "clerk", "", 60),
        (Role.STAFF, "clerk", "s{1}", 60),
        (Role.CUSTOMER, "alice", "s1", 60),
        (Role.CUSTOMER, "alice", None, 0),
    ],
)
def test_issue_refuses_what_verify_would_refuse(
    settings: Settings, role: Role, subject: str, store: str | None, ttl_s: int
) -> None:
    issuer = TokenIssuer(TokenKeys.from_settings(settings), settings)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        issuer.issue(role, subject, store=store, ttl_s=ttl_s)


def test_new_guest_subject() -> None:
    subject = new_guest_subject()
    assert subject.startswith("g_")
    assert len(subject) == 34
    int(subject[2:], 16)
    assert subject != new_guest_subject()


async def test_a_remembered_token_still_expires(tmp_path: Path) -> None:
    """Verified tokens are remembered for speed, but never past their own expiry."""
    settings = make_settings(tmp_path, jwt_secrets="k1:" + "s" * 40, jwt_leeway_seconds="0")
    keys = TokenKeys.from_settings(settings)
    token = TokenIssuer(keys, settings).issue(Role.CUSTOMER, "alice", ttl_s=1)
    verifier = TokenVerifier(keys, settings)
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    await asyncio.sleep(2.1)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_remembered_tokens_are_bounded(tmp_path: Path) -> None:
    """Many devices' tokens do not grow the memory of verified tokens past its bound."""
    settings = make_settings(tmp_path, jwt_secrets="k1:" + "s" * 40)
    keys = TokenKeys.from_settings(settings)
    issuer, verifier = TokenIssuer(keys, settings), TokenVerifier(keys, settings)
    first = issuer.issue(Role.CUSTOMER, "c0", ttl_s=600)
    await verifier.verify(first)
    for n in range(1, VERIFIED_CACHE_SIZE + 50):
        await verifier.verify(issuer.issue(Role.CUSTOMER, f"c{n}", ttl_s=600))
    assert verifier.remembered == VERIFIED_CACHE_SIZE
    assert (await verifier.verify(first)).subject == "c0"  # forgotten, so checked again
