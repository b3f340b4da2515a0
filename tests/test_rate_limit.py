"""Per-principal request budgets: a burst gets 429 with Retry-After, and hurts no one else."""

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


@pytest.fixture
def limited(redis_server: RedisProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = service_env(
        redis_server.url,
        tmp_path,
        CARTSYNC_RATE_LIMIT="5/second",
        CARTSYNC_GUEST_ISSUE_RATE_LIMIT="3/minute",
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


def retry_after(r: httpx.Response) -> int:
    """The 429 contract: code rate_limited and a whole number of seconds to wait, at least 1."""
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    raw = r.headers["Retry-After"]
    assert raw.isdigit(), raw
    assert int(raw) >= 1
    return int(raw)


async def test_a_burst_from_one_customer_is_limited_and_others_are_not(
    limited: ServiceProcess, tokens: Tokens
) -> None:
    alice = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    bob = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:12]}")
    async with httpx.AsyncClient(base_url=limited.url, timeout=10) as http:
        burst = [
            http.post("/v1/cart/lines", json={"sku": f"A-{i}"}, headers=alice) for i in range(20)
        ]
        others = [http.get("/v1/cart", headers=bob) for _ in range(4)]
        results = await asyncio.gather(*burst, *others)
        alice_results, bob_results = results[:20], results[20:]

        statuses = sorted(r.status_code for r in alice_results)
        assert set(statuses) == {201, 429}, statuses
        assert statuses.count(201) <= 5
        waits = [retry_after(r) for r in alice_results if r.status_code == 429]
        assert [r.status_code for r in bob_results] == [200] * 4, [r.text for r in bob_results]

        # Refused requests changed nothing: the cart holds exactly the accepted lines.
        accepted = {r.json()["line"]["sku"] for r in alice_results if r.status_code == 201}
        wait = max(waits)
        r = await http.get("/v1/cart", headers=alice)
        for _ in range(5):  # Retry-After is honest: after it, the customer gets through
            if r.status_code == 200:
                break
            await asyncio.sleep(wait)
            r = await http.get("/v1/cart", headers=alice)
        assert r.status_code == 200, r.text
        assert {line["sku"] for line in r.json()["lines"]} == accepted
        assert r.json()["rev"] == len(accepted)

        assert (await http.get("/healthz")).status_code == 200
        assert limited.proc is not None
        assert limited.proc.poll() is None


async def test_guest_token_issuing_is_limited_per_client(limited: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=limited.url, timeout=10) as http:
        results = [await http.post("/v1/guest") for _ in range(5)]
        assert [r.status_code for r in results] == [201, 201, 201, 429, 429]
        for r in results[3:]:
            assert retry_after(r) <= 60
        assert len({r.json()["guest_id"] for r in results[:3]}) == 3

        # Tokens already issued keep working; only issuing new ones is held back.
        guest = {"Authorization": f"Bearer {results[0].json()['token']}"}
        r = await http.post("/v1/cart/lines", json={"sku": "G-1"}, headers=guest)
        assert r.status_code == 201, r.text
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        assert limited.proc is not None
        assert limited.proc.poll() is None
