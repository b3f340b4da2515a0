"""A small OpenID provider on loopback: a discovery document, a JWKS, and tokens it signs.

Enough of a real provider for cartsync's side of the contract: keys made with
``cryptography``, rotated and retired at will, a provider that can be taken down and brought
back on the same port, and a count of the key set fetches it served.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.processes import free_port

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


class Provider:
    """An identity provider at ``issuer``; ``keys`` are what its JWKS lists."""

    def __init__(self, *, path: str = "/realms/shop", port: int | None = None) -> None:
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}{path}"
        self.keys: dict[str, PrivateKey] = {}
        self.published: list[str] = []
        self.extra_jwks: list[dict[str, Any]] = []
        """Entries served besides the public keys (an encryption key, private material...)."""
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def jwks_url(self) -> str:
        return self.issuer.rstrip("/") + "/protocol/openid-connect/certs"

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

    def start(self) -> Provider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                base = provider.issuer.removeprefix(f"http://127.0.0.1:{provider.port}")
                if self.path == base.rstrip("/") + "/.well-known/openid-configuration":
                    provider.discovery_fetches += 1
                    body = {"issuer": provider.issuer, "jwks_uri": provider.jwks_url}
                elif f"http://127.0.0.1:{provider.port}{self.path}" == provider.jwks_url:
                    provider.jwks_fetches += 1
                    body = provider.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the provider down: its port refuses connections until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Provider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def keycloak_claims(provider: Provider, username: str, roles: list[str], **extra: Any) -> dict:
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


def auth0_claims(provider: Provider, user: str, roles: list[str], **extra: Any) -> dict:
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
