"""Retries: sent only when they are safe and useful, with the same Idempotency-Key each time."""

from __future__ import annotations

import pytest
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

from cartsync_client import (
    Backoff,
    CartsyncClient,
    Conflict,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unavailable,
)
from client_testkit import FAST, TcpProxy


async def test_mutation_retried_after_lost_response_is_applied_once(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        TcpProxy(service.port, mode="drop_first_response") as proxy,
        CartsyncClient(proxy.url, token, backoff=FAST, retries=3) as c,
    ):
        added = await c.add_line("CAP-1", qty=2)
        assert proxy.dropped == 1  # the first answer never reached the client
        assert proxy.requests == [("POST", "/v1/cart/lines")] * 2
        cart = await c.get_cart()
        history = await c.history()
    assert [(x.sku, x.qty) for x in cart.lines] == [("CAP-1", 2)]
    assert [e.type for e in history.events] == ["line.added"]
    assert added.rev == 1
    assert added.line == cart.lines[0]


async def test_lost_response_to_a_non_idempotent_looking_change_is_still_once(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with CartsyncClient(service.url, token, backoff=FAST) as direct:
        line = (await direct.add_line("MUG-1", qty=1)).line
    async with (
        TcpProxy(service.port, mode="drop_first_response") as proxy,
        CartsyncClient(proxy.url, token, backoff=FAST) as c,
    ):
        result = await c.add_line("MUG-1", qty=5)  # adds to the line: twice would be 11
        assert proxy.dropped == 1
    assert (result.line.id, result.line.qty) == (line.id, 6)
    async with CartsyncClient(service.url, token, backoff=FAST) as direct:
        assert [x.qty for x in (await direct.get_cart()).lines] == [6]
        assert (await direct.get_cart()).rev == 2


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.patch_line("L404", qty=1), NotFound),
        (lambda c: c.add_line("bad sku!"), InvalidRequest),
        (lambda c: c.create_wishlist("default"), Conflict),
    ],
)
async def test_other_4xx_are_not_retried(
    service: ServiceProcess, tokens: Tokens, customer_id: str, call: object, error: type
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        TcpProxy(service.port) as proxy,
        CartsyncClient(proxy.url, token, backoff=FAST, retries=5) as c,
    ):
        with pytest.raises(error):
            await call(c)  # type: ignore[operator]
    assert len(proxy.requests) == 1


async def test_unreachable_service_is_unavailable_after_bounded_retries(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with (
        TcpProxy(service.port, mode="reset") as proxy,
        CartsyncClient(proxy.url, token, backoff=FAST, retries=2) as c,
    ):
        with pytest.raises(Unavailable) as caught:
            await c.add_line("CAP-1", idempotency_key="key-kept-for-later")
    assert proxy.connections == 3  # the first try and two retries
    assert (caught.value.status, caught.value.code) == (0, "unreachable")
    assert caught.value.idempotency_key == "key-kept-for-later"


async def test_idempotency_key_is_kept_for_a_later_retry_by_the_caller(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    """A caller that gave up after Unavailable can send the same change again with the key."""
    token = tokens.token("customer", customer_id)
    async with (
        TcpProxy(service.port, mode="drop_first_response") as proxy,
        CartsyncClient(proxy.url, token, backoff=FAST, retries=0) as c,
    ):
        with pytest.raises(Unavailable) as caught:
            await c.add_line("CAP-1", qty=3)
    key = caught.value.idempotency_key
    assert key is not None
    async with CartsyncClient(service.url, token, backoff=FAST) as c:
        again = await c.add_line("CAP-1", qty=3, idempotency_key=key)
        assert again.line.qty == 3
        assert (await c.get_cart()).rev == 1


@pytest.mark.slow
async def test_rate_limited_calls_wait_for_retry_after(
    redis_server: RedisProcess,
    tokens: Tokens,
    customer_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = service_env(
        redis_server.url, tmp_path_factory.mktemp("ratelimited"), CARTSYNC_RATE_LIMIT="2/second"
    )
    proc = ServiceProcess(env).start()
    try:
        token = tokens.token("customer", customer_id)
        patient = Backoff(base=0.05, cap=5.0)
        async with TcpProxy(proc.port) as proxy:
            async with CartsyncClient(proxy.url, token, backoff=patient, retries=4) as c:
                for i in range(5):
                    await c.add_line(f"SKU-{i}")
            # Some were refused with 429 and sent again; each change was applied once.
            assert len(proxy.requests) > 5
        async with CartsyncClient(proc.url, token, backoff=FAST, retries=0) as c:
            refusals: list[RateLimited] = []
            for i in range(10):
                try:
                    await c.add_line(f"MORE-{i}")
                except RateLimited as exc:
                    refusals.append(exc)
            assert refusals, "ten changes at once were all let through a 2/second limit"
            caught = refusals[0]
            assert (caught.status, caught.code) == (429, "rate_limited")
            assert caught.retry_after is not None
            assert caught.retry_after >= 1
        async with CartsyncClient(proc.url, token, backoff=patient, retries=4) as c:
            history = await c.history()
        added = [e.data["line"]["sku"] for e in history.events]
        assert added[:5] == [f"SKU-{i}" for i in range(5)]
        assert len(added) == len(set(added))
    finally:
        proc.stop()


@pytest.mark.slow
async def test_store_outage_is_unavailable(
    tokens: Tokens, customer_id: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = RedisProcess(tmp_path_factory.mktemp("redis-outage")).start()
    proc: ServiceProcess | None = None
    try:
        proc = ServiceProcess(service_env(redis.url, tmp_path_factory.mktemp("outage"))).start()
        token = tokens.token("customer", customer_id)
        async with CartsyncClient(proc.url, token, backoff=FAST, retries=1) as c:
            await c.add_line("CAP-1")
            redis.stop()
            async with TcpProxy(proc.port) as proxy:
                waits = Backoff(base=0.05, cap=2.0)  # long enough for Retry-After: 1
                async with CartsyncClient(proxy.url, token, backoff=waits, retries=1) as p:
                    with pytest.raises(Unavailable) as caught:
                        await p.add_line("CAP-2")
                assert len(proxy.requests) == 2  # a 503 is worth one more try
            assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
            assert caught.value.retry_after is not None
            redis.start()
            # Redis came back (empty, as configured here): the same client works again.
            cart = await c.get_cart()
            assert cart.lines == []
    finally:
        if proc is not None:
            proc.stop()
        redis.stop()
