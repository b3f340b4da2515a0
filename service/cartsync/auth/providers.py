"""Issuers whose keys come over HTTP: identity providers, and our own JWKS URL if set."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from cartsync.auth.claims import OWN_CLAIMS, ClaimMap
from cartsync.auth.jwks import RemoteKeys
from cartsync.settings import Settings


@dataclass(frozen=True)
class Provider:
    """One issuer: where its keys come from, the audience its tokens must name, its claims."""

    keys: RemoteKeys
    audience: str
    claims: ClaimMap


def providers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Provider]:
    """Every issuer whose keys are fetched, by ``iss``."""
    found = {
        i.issuer: Provider(RemoteKeys(http, i.issuer, i.jwks_url), i.audience, ClaimMap.of(i))
        for i in settings.issuers
    }
    if settings.jwt_jwks_url:
        keys = RemoteKeys(http, settings.jwt_issuer, settings.jwt_jwks_url)
        found[settings.jwt_issuer] = Provider(keys, settings.jwt_audience, OWN_CLAIMS)
    return found
