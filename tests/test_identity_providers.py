"""Tokens from a retailer's identity provider: keys by URL, claim maps, rotation and outages.

A small OpenID provider runs on loopback (tests/support/oidc.py); its tokens have the shapes
Keycloak and Auth0 give them. Nothing here is mocked: keys are fetched over HTTP by the same
code the service runs, and the last tests run a real service against the provider.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cartsync.auth.providers import providers
from cartsync.auth.tokens import TokenKeys, TokenVerifier
from cartsync.domain.principal import Principal, Role
from cartsync.errors import Unauthenticated
from cartsync.settings import Settings, SettingsError
from tests.support.oidc import AUTH0_NAMESPACE, Provider, auth0_claims, keycloak_claims
from tests.support.processes import SERVICE_SRC, RedisProcess, ServiceProcess, service_env
from tests.test_live import bearer, dial, next_frame

# Keycloak: realm roles; the store is a user attribute mapped into the token.
KEYCLOAK_ROLES = "customer=shopper,staff=store-staff"
# Auth0: namespaced claims for roles and store, as its Actions add them.
ISSUERS_TOML = """
[[issuer]]
issuer = "{auth0}"
audience = "cartsync"
role_claim = "{ns}roles"
store_claim = "{ns}store"
roles = {{ service = "backoffice", staff = ["store-staff", "store-lead"] }}
"""


def env_for(tmp_path: Path, keycloak: Provider, auth0: Provider) -> dict[str, str]:
    listed = tmp_path / "issuers.toml"
    listed.write_text(ISSUERS_TOML.format(auth0=auth0.issuer, ns=AUTH0_NAMESPACE))
    return {
        "CARTSYNC_DATA_DIR": str(tmp_path / "data"),
        "CARTSYNC_OIDC_ISSUER": keycloak.issuer,  # keys found by discovery
        "CARTSYNC_OIDC_ROLE_CLAIM": "realm_access.roles",
        "CARTSYNC_OIDC_ROLES": KEYCLOAK_ROLES,
        "CARTSYNC_OIDC_STORE_CLAIM": "store_id",
        "CARTSYNC_ISSUERS_FILE": str(listed),
    }


@pytest.fixture
def keycloak() -> Iterator[Provider]:
    with Provider(path="/realms/shop") as provider:
        provider.add_key("RSA", "kc-rsa-1")
        yield provider


@pytest.fixture
def auth0() -> Iterator[Provider]:
    with Provider(path="/") as provider:  # Auth0's issuer ends in a slash
        provider.add_key("EC", "a0-ec-1")
        provider.add_key("OKP", "a0-ed-1")
        yield provider


class Verifiers:
    """A verifier as the service builds it, with its key sets started."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.verifier = TokenVerifier(
            TokenKeys.from_settings(settings), settings, providers(settings, http)
        )

    async def loaded(self) -> TokenVerifier:
        for remote in self.verifier.remote:
            await remote.refresh()
            assert remote.loaded.is_set(), remote.last_error
        return self.verifier


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        yield client


@pytest.fixture
async def verifier(
    tmp_path: Path, keycloak: Provider, auth0: Provider, http: httpx.AsyncClient
) -> TokenVerifier:
    settings = Settings.from_env(env_for(tmp_path, keycloak, auth0))
    return await Verifiers(settings, http).loaded()


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    message = caught.value.message
    assert token not in message
    return message


# Who the tokens say the caller is ------------------------------------------------------------


async def test_keycloak_and_auth0_tokens_become_principals(
    verifier: TokenVerifier, keycloak: Provider, auth0: Provider
) -> None:
    shopper = keycloak_claims(keycloak, "alice", ["shopper"])
    clerk = keycloak_claims(keycloak, "bob", ["store-staff"], store_id="berlin-3")
    assert await verifier.verify(keycloak.sign(shopper, "kc-rsa-1")) == Principal(
        Role.CUSTOMER, shopper["sub"]
    )
    assert await verifier.verify(keycloak.sign(clerk, "kc-rsa-1")) == Principal(
        Role.STAFF, clerk["sub"], "berlin-3"
    )
    backoffice = auth0_claims(auth0, "crm-1", ["backoffice"])
    lead = auth0_claims(auth0, "lead-7", ["store-lead"], **{AUTH0_NAMESPACE + "store": "hh-1"})
    assert await verifier.verify(auth0.sign(backoffice, "a0-ec-1")) == Principal(
        Role.SERVICE, "auth0|crm-1"
    )
    assert await verifier.verify(auth0.sign(lead, "a0-ed-1")) == Principal(
        Role.STAFF, "auth0|lead-7", "hh-1"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"realm_access": {"roles": ["offline_access"]}}, "'realm_access.roles' names no role"),
        ({"realm_access": None}, "lacks the 'realm_access.roles' claim"),
        ({"realm_access": {"roles": ["shopper", "store-staff"]}, "store_id": "b1"}, "several"),
        ({"realm_access": {"roles": ["store-staff"]}}, "'store_id' claim"),
        ({"sub": "a{b}"}, "subject"),
        ({"aud": "another-api"}, "audience"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ],
    ids=[
        "no-mapped-role",
        "no-role-claim",
        "two-roles",
        "staff-without-store",
        "subject",
        "audience",
        "expired",
        "not-yet-valid",
    ],
)
async def test_keycloak_tokens_that_do_not_fit_are_refused_naming_the_claim(
    verifier: TokenVerifier, keycloak: Provider, change: dict[str, Any], reason: str
) -> None:
    claims = {**keycloak_claims(keycloak, "carol", ["shopper"]), **change}
    claims = {k: v for k, v in claims.items() if v is not None}
    assert reason in await refused(verifier, keycloak.sign(claims, "kc-rsa-1"))


async def test_a_provider_cannot_mint_guests_or_unmapped_roles(
    verifier: TokenVerifier, auth0: Provider
) -> None:
    guest = auth0_claims(auth0, "g1", ["guest"])
    assert "names no role" in await refused(verifier, auth0.sign(guest, "a0-ec-1"))


async def test_signature_tricks_are_refused_for_every_issuer(
    verifier: TokenVerifier, keycloak: Provider, auth0: Provider
) -> None:
    for provider, kid in ((keycloak, "kc-rsa-1"), (auth0, "a0-ec-1")):
        roles = ["shopper"] if provider is keycloak else ["backoffice"]
        maker = keycloak_claims if provider is keycloak else auth0_claims
        claims = maker(provider, "mallory", roles)
        # alg "none": no signature at all.
        unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
        assert "algorithm" in await refused(verifier, unsigned)
        # HS256 with the provider's public key as the HMAC secret (algorithm confusion).
        pem = (
            provider.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        forged = _hs256_with(claims, pem, kid)
        assert "algorithm" in await refused(verifier, forged)
        # Signed by the provider, but claiming another issuer: no key of ours fits.
        other = {**claims, "iss": "http://127.0.0.1:1/elsewhere"}
        assert "unknown key" in await refused(verifier, provider.sign(other, kid))
        # A key of one provider does not vouch for the other's issuer.
        stranger = keycloak if provider is auth0 else auth0
        crossed = {**claims, "iss": stranger.issuer}
        assert "unknown key" in await refused(verifier, provider.sign(crossed, kid))


def _hs256_with(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """What an attacker hand-signs: PyJWT itself refuses a PEM as an HMAC key."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


# Keys over time --------------------------------------------------------------------------


async def test_a_rotated_key_is_picked_up_and_a_retired_one_stops_working(
    verifier: TokenVerifier, keycloak: Provider
) -> None:
    remote = next(r for r in verifier.remote if r.issuer == keycloak.issuer)
    old_token = keycloak.sign(keycloak_claims(keycloak, "dave", ["shopper"]), "kc-rsa-1")
    assert (await verifier.verify(old_token)).role is Role.CUSTOMER
    fetches = keycloak.jwks_fetches
    new_kid = keycloak.add_key("RSA", "kc-rsa-2")  # the provider rotates: a new signing key
    remote._min_refresh_s = 0  # this test does not wait a minute between fetches
    new_token = keycloak.sign(keycloak_claims(keycloak, "erin", ["shopper"]), new_kid)
    assert (await verifier.verify(new_token)).role is Role.CUSTOMER
    assert keycloak.jwks_fetches == fetches + 1  # one fetch, on the unknown kid
    # The old key is still listed: tokens signed with it keep working until they expire.
    again = keycloak.sign(keycloak_claims(keycloak, "dave2", ["shopper"]), "kc-rsa-1")
    assert (await verifier.verify(again)).role is Role.CUSTOMER
    # Retired by the provider: after the next fetch its tokens are refused.
    keycloak.retire("kc-rsa-1")
    await remote.refresh()
    late = keycloak.sign(keycloak_claims(keycloak, "dave3", ["shopper"]), "kc-rsa-1")
    assert "unknown key" in await refused(verifier, late)


async def test_a_token_verified_before_its_key_was_retired_is_refused_after(
    verifier: TokenVerifier, keycloak: Provider
) -> None:
    """Verified tokens are remembered, but not past the fetch that retired their key."""
    remote = next(r for r in verifier.remote if r.issuer == keycloak.issuer)
    token = keycloak.sign(keycloak_claims(keycloak, "hana", ["shopper"]), "kc-rsa-1")
    assert (await verifier.verify(token)).role is Role.CUSTOMER
    keycloak.add_key("RSA", "kc-rsa-2")
    await remote.refresh()  # a key was added, none retired: the remembered token still holds
    assert (await verifier.verify(token)).role is Role.CUSTOMER
    keycloak.retire("kc-rsa-1")
    await remote.refresh()
    assert "unknown key" in await refused(verifier, token)


async def test_cached_keys_keep_working_while_the_provider_is_down(
    verifier: TokenVerifier, keycloak: Provider
) -> None:
    remote = next(r for r in verifier.remote if r.issuer == keycloak.issuer)
    keycloak.stop()
    remote._min_refresh_s = 0
    await remote.refresh()  # fails: connection refused
    assert remote.last_error is not None
    token = keycloak.sign(keycloak_claims(keycloak, "frank", ["shopper"]), "kc-rsa-1")
    assert (await verifier.verify(token)).role is Role.CUSTOMER
    # A kid we never saw cannot be checked while the provider is away: refused, not a 500.
    keycloak.add_key("RSA", "kc-rsa-9")
    fresh = keycloak.sign(keycloak_claims(keycloak, "gina", ["shopper"]), "kc-rsa-9")
    assert "unknown key" in await refused(verifier, fresh)
    keycloak.start()
    assert (await verifier.verify(fresh)).role is Role.CUSTOMER


async def test_a_flood_of_made_up_kids_costs_the_provider_one_fetch(
    verifier: TokenVerifier, keycloak: Provider
) -> None:
    fetches = keycloak.jwks_fetches
    attacker = keycloak.keys["kc-rsa-1"]
    claims = keycloak_claims(keycloak, "mallory", ["shopper"])
    started = time.monotonic()
    for _ in range(300):
        token = jwt.encode(claims, attacker, "RS256", headers={"kid": secrets.token_hex(8)})
        assert "unknown key" in await refused(verifier, token)
    assert time.monotonic() - started < 60  # all within one refresh interval
    assert keycloak.jwks_fetches - fetches <= 1
    print(f"300 unknown kids: {keycloak.jwks_fetches - fetches} key set fetch(es)")


async def test_a_key_set_with_private_material_or_no_signing_key_is_refused(
    tmp_path: Path, keycloak: Provider, auth0: Provider, http: httpx.AsyncClient
) -> None:
    private = keycloak.keys["kc-rsa-1"].private_numbers()  # type: ignore[union-attr]
    leaked = {"kty": "RSA", "kid": "oops", "n": "AQAB", "e": "AQAB", "d": str(private.d)}
    keycloak.extra_jwks = [leaked]
    settings = Settings.from_env(env_for(tmp_path, keycloak, auth0))
    verifier = TokenVerifier(TokenKeys.from_settings(settings), settings, providers(settings, http))
    remote = next(r for r in verifier.remote if r.issuer == keycloak.issuer)
    await remote.refresh()
    assert not remote.loaded.is_set()
    assert remote.last_error is not None
    assert "private key material" in remote.last_error
    # Only an encryption key listed (Keycloak lists one beside its signing keys): not usable.
    keycloak.extra_jwks = []
    keycloak.retire("kc-rsa-1")
    keycloak.extra_jwks = [{"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"}]
    remote._min_refresh_s = 0
    await remote.refresh()
    assert not remote.loaded.is_set()
    assert "no signing key" in (remote.last_error or "")


# Configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CARTSYNC_OIDC_ISSUER": "http://idp/x", "CARTSYNC_OIDC_ROLES": "admin=root"}, "admin"),
        ({"CARTSYNC_OIDC_ISSUER": "http://idp/x", "CARTSYNC_OIDC_ROLES": "customer"}, "ROLES"),
        ({"CARTSYNC_OIDC_ISSUER": "idp.example"}, "http(s)"),
        ({"CARTSYNC_OIDC_ISSUER": "http://idp/x", "CARTSYNC_OIDC_ROLE": "guest"}, "guest"),
        ({"CARTSYNC_OIDC_ISSUER": "http://idp/x", "CARTSYNC_OIDC_ROLE_CLAIM": " "}, "role_claim"),
        ({"CARTSYNC_ISSUERS_FILE": "/nonexistent/issuers.toml"}, "cannot read"),
        ({"CARTSYNC_OIDC_ISSUER": "cartsync"}, "http(s)"),
    ],
)
def test_a_mapping_that_points_nowhere_stops_start_up_naming_it(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=r".*") as caught:
        Settings.from_env({"CARTSYNC_DATA_DIR": str(tmp_path), **env})
    assert named in str(caught.value)


def test_an_issuers_file_with_unknown_keys_stops_start_up(tmp_path: Path) -> None:
    listed = tmp_path / "issuers.toml"
    listed.write_text('[[issuer]]\nissuer = "https://idp.example/"\nrole_claims = "roles"\n')
    env = {"CARTSYNC_DATA_DIR": str(tmp_path), "CARTSYNC_ISSUERS_FILE": str(listed)}
    with pytest.raises(SettingsError, match="role_claims"):
        Settings.from_env(env)
    done = subprocess.run(
        [sys.executable, "-m", "cartsync", "serve", "--port", "0"],
        env={"PYTHONPATH": str(SERVICE_SRC), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "role_claims" in done.stderr


# A real service on the provider ----------------------------------------------------------


@pytest.fixture
def provider_service(
    redis_server: RedisProcess, tmp_path: Path, keycloak: Provider, auth0: Provider
) -> Iterator[ServiceProcess]:
    keycloak.stop()  # the provider is down when the service starts
    env = service_env(redis_server.url, tmp_path / "svc", **env_for(tmp_path, keycloak, auth0))
    proc = ServiceProcess(env).start(wait_ready=False)
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_service_waits_for_its_provider_then_serves_its_tokens(
    provider_service: ServiceProcess, keycloak: Provider, auth0: Provider
) -> None:
    async with httpx.AsyncClient(base_url=provider_service.url, timeout=10) as http:
        r = await http.get("/readyz")
        assert r.status_code == 503
        assert keycloak.issuer in r.json()["detail"]
        keycloak.start()
        for _ in range(300):  # the service retries with backoff (1 s, 2 s, 4 s... apart)
            r = await http.get("/readyz")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200, r.text

        shopper = keycloak_claims(keycloak, f"shopper-{uuid.uuid4().hex[:6]}", ["shopper"])
        token = keycloak.sign(shopper, "kc-rsa-1")
        added = await http.post(
            "/v1/cart/lines",
            json={"sku": "TEE-1", "qty": 2},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert added.status_code == 201, added.text
        backoffice = auth0.sign(auth0_claims(auth0, "crm", ["backoffice"]), "a0-ed-1")
        seen = await http.get(
            f"/v1/customers/{shopper['sub']}/cart",
            headers={"Authorization": f"Bearer {backoffice}"},
        )
        assert seen.status_code == 200, seen.text
        assert [(line["sku"], line["qty"]) for line in seen.json()["lines"]] == [("TEE-1", 2)]
        # A provider role that maps to nothing is a 401 that names the claim.
        nobody = keycloak.sign(keycloak_claims(keycloak, "x", ["offline_access"]), "kc-rsa-1")
        r = await http.get("/v1/cart", headers={"Authorization": f"Bearer {nobody}"})
        assert r.status_code == 401
        assert "realm_access.roles" in r.json()["error"]["message"]

    async with dial(provider_service, subprotocols=bearer(token)) as ws:
        hello = await next_frame(ws)
        assert hello["type"] == "hello"
        assert hello["owner"] == f"c:{shopper['sub']}"
    log = provider_service.log_path.read_text()
    assert f"keys of issuer {keycloak.issuer} not fetched" in log
    assert "not ready until they load" in log
