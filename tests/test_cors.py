"""The web shop's JS calls cartsync from the shop's origin: CORS lets exactly that origin in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def cors_service(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    data: Path = tmp_path_factory.mktemp("cors")
    proc = ServiceProcess(service_env(redis_server.url, data, CARTSYNC_CORS_ORIGINS=SHOP)).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_preflight_allows_the_shop_origin_and_our_headers(cors_service: ServiceProcess) -> None:
    r = httpx.options(
        cors_service.url + "/v1/cart/lines",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    allowed = r.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "idempotency-key", "if-match", "x-device-id"):
        assert header in allowed


def test_other_origins_get_no_cors_grant(cors_service: ServiceProcess) -> None:
    r = httpx.options(
        cors_service.url + "/v1/cart",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_responses_expose_etag_to_the_shop(
    cors_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    headers = {"Origin": SHOP, **tokens.headers("customer", customer_id)}
    r = httpx.get(cors_service.url + "/v1/cart", headers=headers)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "etag" in r.headers["access-control-expose-headers"].lower()
