"""``CARTSYNC_REDIS_WAIT_REPLICAS``: a change is answered only once a replica has it (or the
timeout passed). ``WAIT`` counts the writes of the connection it is sent on, so it must follow
the change's script on that same connection: sent on another pooled connection, whose own
writes the replica already had, it returns at once and the change is acknowledged while only
the master holds it.

A master and its replica through a ``ReplicationLink``; with the link held, concurrent adds of
several customers (so several pooled connections are in use) must not be answered before the
link is let go, and once answered, the replica must have each of them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cartsync.storage.keys import OwnerKeys
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env
from tests.support.topologies import ReplicationLink, wait_until

pytestmark = pytest.mark.slow

HELD_S = 1.0
WAIT_TIMEOUT_MS = 10_000
CUSTOMERS = 8
POOL = 3


class Replicated:
    def __init__(self, workdir: Path) -> None:
        self.master = RedisProcess(workdir / "master")
        self.link = ReplicationLink(self.master.port)
        self.replica = RedisProcess(
            workdir / "replica", extra=["--replicaof", "127.0.0.1", str(self.link.port)]
        )

    def in_sync(self) -> bool:
        with self.replica.client() as replica:
            info = replica.info("replication")
        return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Replicated]:
    pair = Replicated(tmp_path)
    pair.master.start()
    try:
        pair.replica.start()
        wait_until("the replica is in sync with the master", pair.in_sync)
        yield pair
    finally:
        pair.replica.stop()
        pair.master.stop()
        pair.link.close()


@pytest.fixture
def waiting_service(replicated: Replicated, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = service_env(
        replicated.master.url,
        tmp_path / "service",
        CARTSYNC_REDIS_WAIT_REPLICAS="1",
        CARTSYNC_REDIS_WAIT_TIMEOUT_MS=str(WAIT_TIMEOUT_MS),
        # Fewer connections than requests in flight: each command waits for whichever
        # connection comes free, as on a busy instance.
        CARTSYNC_REDIS_MAX_CONNECTIONS=str(POOL),
    )
    service = ServiceProcess(env).start()
    try:
        yield service
    finally:
        service.stop()


async def test_no_change_is_answered_before_the_replica_has_it(
    replicated: Replicated, waiting_service: ServiceProcess, tokens: Tokens
) -> None:
    customers = [f"cust-{uuid.uuid4().hex[:12]}" for _ in range(CUSTOMERS)]
    headers = {c: tokens.headers("customer", c) for c in customers}
    async with httpx.AsyncClient(base_url=waiting_service.url, timeout=30) as http:

        async def add(customer: str, sku: str) -> tuple[int, float]:
            response = await http.post(
                "/v1/cart/lines", json={"sku": sku, "qty": 1}, headers=headers[customer]
            )
            assert response.status_code == 201, response.text
            return int(response.json()["rev"]), time.monotonic()

        # Every pooled connection the service will use has written (and been replicated) once.
        for round_ in range(3):
            await asyncio.gather(*(add(c, f"warm-{round_}") for c in customers))
        owners = {}
        for c in customers:
            cart = await http.get("/v1/cart", headers=headers[c])
            owners[c] = OwnerKeys(cart.json()["owner"])

        # Reads go on meanwhile, as they do in a shop: their connections return to the pool
        # having written nothing since the link was held.
        reading = True

        async def read(customer: str) -> None:
            while reading:
                response = await http.get("/v1/cart", headers=headers[customer])
                assert response.status_code == 200, response.text

        readers = [asyncio.create_task(read(c)) for c in customers]
        await asyncio.sleep(0.2)
        replicated.link.stall()
        held_at = time.monotonic()
        adds = [asyncio.create_task(add(c, "held")) for c in customers]
        await asyncio.sleep(HELD_S)
        early = [task for task in adds if task.done()]
        replicated.link.resume()
        answered = await asyncio.gather(*adds)
        reading = False
        await asyncio.gather(*readers)

    assert not early, f"{len(early)} of {CUSTOMERS} adds were answered while no replica had them"
    assert all(at - held_at >= HELD_S for _, at in answered)
    with replicated.replica.client() as replica:
        for customer, (rev, _) in zip(customers, answered, strict=True):
            stored = replica.hget(owners[customer].meta, "rev")
            assert stored is not None, customer
            assert int(stored) >= rev, (customer, stored, rev)
