"""A token provider: an app that runs longer than its token keeps its socket, state and ops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env

from cartsync_client import CartMirror, CartsyncClient, Event, Snapshot, Unauthorized, Update
from client_testkit import FAST, TcpProxy, follow, refused

SHORT_TTL_S = 2


@pytest.fixture
def strict_service(redis_server: RedisProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service without clock leeway, so a token is refused as soon as it expires."""
    env = service_env(redis_server.url, tmp_path / "strict", CARTSYNC_JWT_LEEWAY_SECONDS="0")
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


class Issuer:
    """A provider whose first token expires in ``SHORT_TTL_S``; it hands that one out for its
    first ``stale_calls`` calls (it has nothing newer yet), then tokens for ten minutes."""

    def __init__(self, tokens: Tokens, customer_id: str, stale_calls: int = 1) -> None:
        self.first_expires = time.time() + SHORT_TTL_S
        self.first = tokens.token("customer", customer_id, ttl_s=SHORT_TTL_S)
        self.later = tokens.token("customer", customer_id, ttl_s=600)
        self.stale_calls = stale_calls
        self.handed: list[str] = []

    def __call__(self) -> str:
        self.handed.append("first" if len(self.handed) < self.stale_calls else "later")
        return self.first if self.handed[-1] == "first" else self.later

    async def until_first_expired(self) -> None:
        await asyncio.sleep(max(0.0, self.first_expires - time.time()) + 1.2)


async def test_the_socket_is_given_a_fresh_token_before_its_own_runs_out(
    strict_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    issuer = Issuer(tokens, customer_id)
    async with (
        CartsyncClient(strict_service.url, issuer, backoff=FAST) as phone,
        phone.subscribe(backoff=FAST) as live,
    ):
        mirror = CartMirror()
        mirror.apply(await asyncio.wait_for(anext(live), 10))
        await issuer.until_first_expired()
        added = await phone.add_line("CAP-1")
        await follow(live, mirror, added.rev)
        assert mirror.agrees_with(await phone.get_cart())
    assert issuer.handed == ["first", "later"]
    assert live.connections == 1  # the same socket, past the first token's expiry


async def test_a_socket_whose_token_ran_out_reconnects_with_a_fresh_one_keeping_state_and_ops(
    strict_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    issuer = Issuer(tokens, customer_id, stale_calls=2)  # nothing newer when first asked
    async with (
        TcpProxy(strict_service.port) as proxy,
        CartsyncClient(proxy.url, issuer, device_id="phone", backoff=FAST) as phone,
        phone.subscribe(backoff=FAST) as live,
    ):
        mirror = CartMirror()
        mirror.apply(await asyncio.wait_for(anext(live), 10))
        await phone.add_line("CAP-1")
        await follow(live, mirror, 1)

        proxy.mode = "reset"  # from now on no new connection gets through
        await issuer.until_first_expired()  # the service closed the socket (4401)
        note = {"note": "on the train"}
        op = asyncio.create_task(live.send_op("set_note", body=note, op_id="n1"))
        await asyncio.sleep(0.3)
        assert not op.done()
        proxy.mode = "pass"
        ack = await asyncio.wait_for(op, 20)
        updates: list[Update] = []
        async with asyncio.timeout(20):
            while mirror.rev < ack.rev:
                updates.append(await anext(live))
                mirror.apply(updates[-1])
        cart = await phone.get_cart()
    assert issuer.handed == ["first", "first", "later"]
    assert (ack.id, ack.rev, ack.replayed) == ("n1", 2, False)
    assert [(u.type, u.rev) for u in updates if isinstance(u, Event)] == [("cart.note_set", 2)]
    assert len(updates) == 1  # resumed from its revision: no snapshot
    assert live.connections == 2
    assert mirror.agrees_with(cart)


async def test_a_socket_refused_for_its_token_connects_with_the_providers_next_one(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    good = tokens.token("customer", customer_id)
    handed: list[str] = []

    def provider() -> str:
        handed.append(refused(good) if not handed else good)
        return handed[-1]

    async with (
        CartsyncClient(service.url, provider, backoff=FAST) as phone,
        phone.subscribe(backoff=FAST) as live,
    ):
        first = await asyncio.wait_for(anext(live), 10)
    assert isinstance(first, Snapshot)
    assert handed == [refused(good), good]
    assert live.connections == 1


async def test_a_refused_request_is_sent_again_with_a_fresh_token_and_the_same_key(
    strict_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    issuer = Issuer(tokens, customer_id)

    async def provider() -> str:
        return issuer()

    async with CartsyncClient(strict_service.url, provider, backoff=FAST) as phone:
        await phone.add_line("CAP-1")
        await issuer.until_first_expired()
        note = await phone.set_note("later", idempotency_key="note-later")
        replay = await phone.set_note("later", idempotency_key="note-later")
        history = await phone.history()
    assert issuer.handed == ["first", "later"]
    assert phone.token_refreshes == 2
    assert (note.rev, replay.rev) == (2, 2)
    assert [e.type for e in history.events] == ["line.added", "cart.note_set"]


async def test_a_fixed_token_that_expired_is_unauthorized(
    strict_service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id, ttl_s=SHORT_TTL_S)
    async with CartsyncClient(strict_service.url, token, backoff=FAST) as phone:
        await phone.get_cart()
        await asyncio.sleep(SHORT_TTL_S + 1.2)
        with pytest.raises(Unauthorized):
            await phone.get_cart()
