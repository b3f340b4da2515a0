"""Redis goes away or stalls: the service answers 503 with Retry-After, and recovers by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

pytestmark = pytest.mark.slow

POLL_S = 0.25
POLL_ROUNDS = 60
"""Bounded waits: at most 60 polls a quarter of a second apart (15 s)."""


@pytest.fixture
def private_service(private_redis: RedisProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = service_env(private_redis.url, tmp_path / "service", CARTSYNC_REDIS_TIMEOUT_SECONDS="0.5")
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


def assert_store_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    retry_after = r.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1


async def first_status(
    http: httpx.AsyncClient, method: str, url: str, wanted: int, json: object = None
) -> httpx.Response:
    """Repeat a request until it answers ``wanted`` (bounded); the last response either way."""
    r = await http.request(method, url, json=json)
    for _ in range(POLL_ROUNDS):
        if r.status_code == wanted:
            break
        await asyncio.sleep(POLL_S)
        r = await http.request(method, url, json=json)
    return r


async def test_redis_down_gives_503_and_the_service_recovers_when_it_returns(
    private_redis: RedisProcess, private_service: ServiceProcess, tokens: Tokens
) -> None:
    customer = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    async with httpx.AsyncClient(
        base_url=private_service.url, headers=customer, timeout=10
    ) as http:
        for sku in ("A-1", "B-1"):
            r = await http.post("/v1/cart/lines", json={"sku": sku})
            assert r.status_code == 201, r.text
        assert (await http.get("/readyz")).status_code == 200

        private_redis.stop()

        r = await first_status(http, "POST", "/v1/cart/lines", 503, json={"sku": "C-1"})
        assert_store_unavailable(r)
        assert_store_unavailable(await http.get("/v1/cart"))
        assert_store_unavailable(await http.get("/v1/wishlists"))
        assert_store_unavailable(await http.get("/v1/cart/history"))
        r = await http.post("/v1/cart/merge", json={"guest_token": tokens.token("guest", "g_1")})
        assert_store_unavailable(r)
        r = await first_status(http, "GET", "/readyz", 503)
        assert r.status_code == 503, r.text
        assert r.json()["status"] == "unavailable"
        r = await http.get("/healthz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}
        # Auth and validation do not need Redis: they still answer as usual.
        assert (
            await http.get("/v1/cart", headers={"Authorization": "Bearer x"})
        ).status_code == 401
        r = await http.post("/v1/cart/lines", json={"sku": "C-1", "qty": 0})
        assert r.status_code == 422, r.text

        private_redis.start()  # same port; no persistence, so it comes back empty

        r = await first_status(http, "GET", "/readyz", 200)
        assert r.status_code == 200, r.text
        r = await first_status(http, "POST", "/v1/cart/lines", 201, json={"sku": "D-1"})
        assert r.status_code == 201, r.text
        r = await http.get("/v1/cart")
        assert r.status_code == 200, r.text
        assert [line["sku"] for line in r.json()["lines"]] == ["D-1"]
        assert private_service.proc is not None
        assert private_service.proc.poll() is None, "the service must not have restarted"


async def test_a_stalled_redis_gives_503_in_time_and_the_service_recovers(
    private_redis: RedisProcess, private_service: ServiceProcess, tokens: Tokens
) -> None:
    customer = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    async with httpx.AsyncClient(
        base_url=private_service.url, headers=customer, timeout=10
    ) as http:
        r = await http.post("/v1/cart/lines", json={"sku": "A-1"})
        assert r.status_code == 201, r.text

        key = {"Idempotency-Key": f"stall-{uuid.uuid4().hex}"}
        admin = private_redis.client()
        try:
            # While Redis is paused a request that waited for it would get 200 once the pause
            # ends; a 503 shows the service gave up after its own timeout (0.5 s) instead. The
            # requests go out together and take about two timeouts (one retry), well inside the
            # pause. (Redis 7.0 holds even CLIENT UNPAUSE during a pause, so it just runs out.)
            admin.client_pause(5000, all=True)
            stalled_write, stalled_read, stalled_ready, healthy = await asyncio.gather(
                http.post("/v1/cart/lines", json={"sku": "B-1", "qty": 2}, headers=key),
                http.get("/v1/cart"),
                http.get("/readyz"),
                http.get("/healthz"),
            )
        finally:
            admin.close()
        assert_store_unavailable(stalled_write)
        assert_store_unavailable(stalled_read)
        assert stalled_ready.status_code == 503, stalled_ready.text
        assert healthy.status_code == 200, healthy.text

        r = await first_status(http, "GET", "/v1/cart", 200)
        assert r.status_code == 200, r.text
        # A 503 leaves the outcome open; retrying with the same key applies it exactly once.
        r = await http.post("/v1/cart/lines", json={"sku": "B-1", "qty": 2}, headers=key)
        assert r.status_code in (200, 201), r.text
        r = await http.post("/v1/cart/lines", json={"sku": "B-1", "qty": 2}, headers=key)
        assert r.status_code in (200, 201), r.text
        assert r.headers.get("Idempotent-Replayed") == "true"
        lines = {line["sku"]: line["qty"] for line in (await http.get("/v1/cart")).json()["lines"]}
        assert lines == {"A-1": 1, "B-1": 2}
        assert (await http.get("/readyz")).status_code == 200
