"""A small OpenID provider on loopback: a discovery document, a JWKS, and tokens it signs.

Enough of a real provider for cartsync's side of the contract: keys made with
``cryptography``, rotated and retired at will, a provider that can be taken down and brought
back on the same port, and a count of the key set fetches it served. For the tablet's sign-in:
authorization code with PKCE, short-lived access tokens, and refresh tokens that rotate on use
and can be revoked (by the test, or by a POST to ``revoke_all_url`` from a browser script), and
a token endpoint that can fail the next few refreshes (a POST to ``outage_url``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.loopback import LoopbackServer, QuietHandler

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def new_key(kind: str) -> PrivateKey:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    """The JWK a provider publishes for ``key``: public half, kid, use and alg."""
    algorithm: Any
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm, name = jwt.algorithms.RSAAlgorithm, "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm, name = jwt.algorithms.ECAlgorithm, "ES256"
    else:
        algorithm, name = jwt.algorithms.OKPAlgorithm, "EdDSA"
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": name})
    return jwk


class Provider(LoopbackServer):
    """An identity provider at ``issuer``; ``keys`` are what its JWKS lists."""

    def __init__(self, *, path: str = "/realms/shop", port: int | None = None) -> None:
        super().__init__(port)
        self.issuer = f"http://127.0.0.1:{self.port}{path}"
        self.keys: dict[str, PrivateKey] = {}
        self.published: list[str] = []
        self.extra_jwks: list[dict[str, Any]] = []
        """Entries served besides the public keys (an encryption key, private material...)."""
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.clients: dict[str, str] = {}
        """Public clients (authorization code with PKCE): client id -> its one redirect URI."""
        self.login: Callable[[], dict[str, Any]] | None = None
        """The claims of whoever signs in at the authorization endpoint (no login form here)."""
        self.signing_kid: str | None = None
        self.token_requests: list[dict[str, str]] = []
        self.token_answers: list[int] = []
        """The status each of ``token_requests`` was answered with."""
        self.refresh_outage = 0
        """The next this many refresh requests are answered 503, the token left as it was."""
        self.access_ttl_s: int | None = None
        """Set: access tokens live this long from issue (refreshed ones too)."""
        self.refresh_tokens = False
        """Issue refresh tokens with the code's tokens (and rotate them on each refresh)."""
        self.refresh_scope: str | None = None
        """Set: refresh tokens only for this scope (as Auth0 wants ``offline_access``)."""
        self._codes: dict[str, tuple[str, str, str, dict[str, Any], str]] = {}
        self._refresh: dict[str, tuple[str, dict[str, Any]]] = {}
        """Live refresh tokens: token -> (client id, the signed-in person's claims)."""

    @property
    def jwks_url(self) -> str:
        return self.issuer.rstrip("/") + "/protocol/openid-connect/certs"

    @property
    def authorization_endpoint(self) -> str:
        return self.issuer.rstrip("/") + "/protocol/openid-connect/auth"

    @property
    def token_endpoint(self) -> str:
        return self.issuer.rstrip("/") + "/protocol/openid-connect/token"

    @property
    def outage_url(self) -> str:
        """POST ``refreshes=N`` here: the next N refresh requests fail with 503."""
        return self.issuer.rstrip("/") + "/admin/outage"

    @property
    def revoke_all_url(self) -> str:
        """POST here: every refresh token is revoked (an admin signing everyone out)."""
        return self.issuer.rstrip("/") + "/admin/sessions/revoke"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": ["openid", "profile", "offline_access"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect an authorization request earns: ``?code&state``, or ``?error``."""
        client, redirect = query.get("client_id", ""), query.get("redirect_uri", "")
        if self.clients.get(client) != redirect or self.login is None:
            raise ValueError("unknown client or redirect URI")
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            answer = {"error": "invalid_request", "state": query.get("state", "")}
            return f"{redirect}?{urlencode(answer)}"
        code = secrets.token_urlsafe(24)
        challenge, scope = query.get("code_challenge", ""), query.get("scope", "")
        self._codes[code] = (client, redirect, challenge, self.login(), scope)
        return f"{redirect}?{urlencode({'code': code, 'state': query.get('state', '')})}"

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A token request: the code once, for its client, redirect URI and PKCE verifier; or
        a live refresh token of that client, once (it is replaced by a new one)."""
        self.token_requests.append(form)
        status, body = self._exchange(form)
        self.token_answers.append(status)
        return status, body

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") == "refresh_token" and self.refresh_outage > 0:
            self.refresh_outage -= 1
            return 503, {"error": "temporarily_unavailable"}
        if form.get("grant_type") == "refresh_token":
            held = self._refresh.pop(form.get("refresh_token", ""), None)
            if held is None or held[0] != form.get("client_id"):
                return 400, {"error": "invalid_grant", "error_description": "token not active"}
            return 200, self._tokens(held[0], held[1], refresh=True)
        found = self._codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or found is None:
            return 400, {"error": "invalid_grant"}
        client, redirect, challenge, claims, scope = found
        verifier = form.get("code_verifier", "").encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
        asked = (form.get("client_id"), form.get("redirect_uri"), digest)
        if asked != (client, redirect, challenge):
            return 400, {"error": "invalid_grant"}
        wanted = self.refresh_scope is None or self.refresh_scope in scope.split()
        return 200, self._tokens(client, claims, refresh=self.refresh_tokens and wanted)

    def _tokens(self, client: str, claims: dict[str, Any], *, refresh: bool) -> dict[str, Any]:
        now = int(time.time())
        if self.access_ttl_s is not None:
            claims = {
                **claims,
                "iat": now,
                "exp": now + self.access_ttl_s,
                "jti": str(uuid.uuid4()),
            }
        kid = self.signing_kid or self.published[0]
        answer: dict[str, Any] = {
            "access_token": self.sign(claims, kid),
            "token_type": "Bearer",
            "expires_in": int(claims["exp"]) - now,
        }
        if refresh:
            answer["refresh_token"] = secrets.token_urlsafe(32)
            self._refresh[answer["refresh_token"]] = (client, claims)
        return answer

    def revoke_refresh_tokens(self) -> int:
        """Revoke every live refresh token (as an admin signing everyone out); how many."""
        count = len(self._refresh)
        self._refresh.clear()
        return count

    def add_key(self, kind: str = "RSA", kid: str | None = None) -> str:
        kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = new_key(kind)
        self.published.append(kid)
        return kid

    def retire(self, kid: str) -> None:
        """Stop listing a key (it can still sign, as a leaked or forgotten key could)."""
        self.published.remove(kid)

    def sign(self, claims: dict[str, Any], kid: str, **header: Any) -> str:
        key = self.keys[kid]
        algorithm = public_jwk(key, kid)["alg"]
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **header})

    def jwks(self) -> dict[str, Any]:
        listed = [public_jwk(self.keys[kid], kid) for kid in self.published]
        return {"keys": [*listed, *self.extra_jwks]}

    # Serving ------------------------------------------------------------------------------

    def handler(self) -> type[QuietHandler]:
        provider = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                base = provider.issuer.removeprefix(f"http://127.0.0.1:{provider.port}")
                url = f"http://127.0.0.1:{provider.port}{self.path}"
                if self.path == base.rstrip("/") + "/.well-known/openid-configuration":
                    provider.discovery_fetches += 1
                    body = provider.discovery()
                elif url == provider.jwks_url:
                    provider.jwks_fetches += 1
                    body = provider.jwks()
                elif url.split("?")[0] == provider.authorization_endpoint:
                    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                    try:
                        location = provider.authorize(query)
                    except ValueError as exc:  # never redirect to an unregistered URI
                        self.send_error(400, str(exc))
                        return
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    self.send_error(404)
                    return
                self._json(200, body)

            def do_POST(self) -> None:
                url = f"http://127.0.0.1:{provider.port}{self.path}"
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if url == provider.revoke_all_url:
                    self._json(200, {"revoked": provider.revoke_refresh_tokens()})
                    return
                if url == provider.outage_url:
                    provider.refresh_outage = int(form.get("refreshes", "1"))
                    self._json(200, {"refreshes": provider.refresh_outage})
                    return
                if url != provider.token_endpoint:
                    self.send_error(404)
                    return
                self._json(*provider.exchange(form))

            def _json(self, status: int, body: dict[str, Any]) -> None:
                # Browser pages call discovery and the token endpoint themselves (public clients).
                cors = {"Access-Control-Allow-Origin": "*"}
                self.answer(status, json.dumps(body).encode(), cors)

        return Handler


def keycloak_claims(
    provider: Provider, username: str, roles: list[str], **extra: Any
) -> dict[str, Any]:
    """An access token's claims as Keycloak issues them (realm roles, azp, typ, session)."""
    now = int(time.time())
    return {
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": provider.issuer,
        "aud": "cartsync",
        "sub": str(uuid.uuid5(uuid.NAMESPACE_DNS, username)),
        "typ": "Bearer",
        "azp": "shop-web",
        "session_state": str(uuid.uuid4()),
        "realm_access": {"roles": ["offline_access", "uma_authorization", *roles]},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid profile email",
        "email_verified": True,
        "preferred_username": username,
        **extra,
    }


AUTH0_NAMESPACE = "https://shop.example.com/"


def auth0_claims(provider: Provider, user: str, roles: list[str], **extra: Any) -> dict[str, Any]:
    """An access token's claims as Auth0 issues them (namespaced custom claims, aud list)."""
    now = int(time.time())
    return {
        "iss": provider.issuer,
        "sub": f"auth0|{user}",
        "aud": ["cartsync", provider.issuer + "userinfo"],
        "iat": now,
        "exp": now + 300,
        "azp": "Xb3fGk0example",
        "scope": "openid profile",
        AUTH0_NAMESPACE + "roles": roles,
        "permissions": [],
        **extra,
    }
