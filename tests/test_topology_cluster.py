"""The same service on a 3-master Redis Cluster (``CARTSYNC_REDIS_CLUSTER=true``).

The module overrides the ``service`` and ``instances`` fixtures, so the core tests imported
below from the standalone suite run unchanged against cartsync on the Cluster. The tests
written here cover what only a Cluster has: a merge whose guest and customer live on different
nodes, and a live socket that keeps every change while its owner's slot moves between nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cartsync.storage.keys import OwnerKeys
from tests import (
    test_bad_input,
    test_cart_api,
    test_concurrency,
    test_idempotency,
    test_live,
    test_merge,
)
from tests.conftest import Tokens
from tests.support.processes import ServiceProcess, service_env
from tests.support.topologies import RedisCluster3
from tests.test_live import Live, live, rest
from tests.test_merge import (
    add_item,
    add_line,
    bearer,
    event_types,
    get_cart,
    line_id,
    merge,
    quantities,
    wishlist_skus,
)

pytestmark = pytest.mark.slow

# The core behaviour of the standalone suite, run here against the Cluster-backed `service`.
REUSED = (
    test_bad_input.test_stale_if_match_is_412_with_the_current_etag,
    test_cart_api.test_add_item_and_add_it_again,
    test_cart_api.test_add_line_returns_the_line_and_etag,
    test_cart_api.test_checkout_freezes_the_cart_and_starts_a_new_one,
    test_cart_api.test_checkout_of_empty_cart_is_refused,
    test_cart_api.test_create_wishlist,
    test_cart_api.test_delete_cart_removes_every_line,
    test_cart_api.test_delete_line,
    test_cart_api.test_delete_wishlist,
    test_cart_api.test_duplicate_wishlist_name_is_a_conflict,
    test_cart_api.test_empty_cart_is_revision_zero,
    test_cart_api.test_history_since_returns_later_events_in_order,
    test_cart_api.test_if_match_with_current_etag_applies,
    test_cart_api.test_move_to_cart,
    test_cart_api.test_patch_attrs,
    test_cart_api.test_patch_qty,
    test_cart_api.test_patch_qty_zero_removes_the_line,
    test_cart_api.test_put_note,
    test_cart_api.test_remove_item,
    test_cart_api.test_rename_wishlist,
    test_cart_api.test_same_sku_and_attrs_sums_into_one_line,
    test_cart_api.test_save_for_later_moves_the_line_into_saved,
    test_cart_api.test_system_wishlists_are_protected,
    test_concurrency.test_fifty_adds_from_five_devices_all_land,
    test_concurrency.test_two_devices_editing_different_lines_lose_nothing,
    test_idempotency.test_keys_are_scoped_to_the_owner,
    test_idempotency.test_replay_returns_the_first_response_after_later_changes,
    test_idempotency.test_retry_after_lost_response_applies_once,
    test_idempotency.test_same_key_with_a_different_body_is_refused,
    test_live.test_a_burst_of_changes_arrives_complete_and_in_order,
    test_live.test_a_guest_gets_its_own_live_events,
    test_live.test_a_socket_on_one_instance_sees_every_change_made_on_another,
    test_live.test_a_socket_only_ever_sees_its_own_customers_events,
    test_live.test_a_socket_that_reconnects_with_since_gets_exactly_what_it_missed,
    test_live.test_an_op_is_acked_and_its_event_is_delivered,
    test_live.test_an_op_retried_over_rest_with_the_same_key_is_applied_once,
    test_live.test_erasing_the_owner_sends_open_sockets_a_fresh_snapshot,
    test_live.test_resuming_at_the_current_revision_sends_nothing_until_the_next_change,
    test_live.test_sync_without_since_sends_a_snapshot_then_live_events,
    test_merge.test_a_guest_merges_into_one_customer_only,
    test_merge.test_a_retried_merge_reports_already_merged_and_changes_nothing,
    test_merge.test_concurrent_merges_of_one_guest_count_its_lines_once,
    test_merge.test_merge_while_another_device_keeps_adding_loses_nothing,
)
# pytest collects test functions from the module's globals: bind each under its own name.
globals().update({test.__name__: test for test in REUSED})
shop = test_bad_input.shop  # the fixture test_stale_if_match_is_412_with_the_current_etag uses


RETRY_DEADLINE_S = 30.0
"""Longest a writer keeps retrying one change through 503s."""
MAX_TRIES = 300


# Fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    with RedisCluster3(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


def on_cluster(cluster: RedisCluster3, data_dir: Path) -> ServiceProcess:
    return ServiceProcess(service_env(cluster.seed_url, data_dir, CARTSYNC_REDIS_CLUSTER="true"))


@pytest.fixture(scope="module")
def service(
    cluster: RedisCluster3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Overrides conftest's ``service``: everything in this module runs on the Cluster."""
    proc = on_cluster(cluster, tmp_path_factory.mktemp("cluster-service")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def instances(
    service: ServiceProcess, cluster: RedisCluster3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Overrides test_live's ``instances``: two service instances on the one Cluster."""
    second = on_cluster(cluster, tmp_path_factory.mktemp("cluster-service-2")).start()
    try:
        yield service, second
    finally:
        second.stop()


# Helpers -----------------------------------------------------------------------------------


def owner_slot(cluster: RedisCluster3, owner: str) -> int:
    """The slot holding every key of ``owner`` ('c:<id>' or 'g:<id>'), checked to be one."""
    keys = OwnerKeys(owner).data_keys()
    slots = {cluster.keyslot(k) for k in keys}
    assert len(slots) == 1, f"{owner}'s keys span slots {slots}"
    return slots.pop()


def owners_on_two_nodes(cluster: RedisCluster3) -> tuple[str, str]:
    """A fresh customer id and guest id whose data lives on different Cluster nodes."""
    for _ in range(200):
        customer_id = f"cust-{uuid.uuid4().hex[:12]}"
        guest_id = f"g_{uuid.uuid4().hex}"
        c_node = cluster.owner_of(owner_slot(cluster, f"c:{customer_id}"))
        g_node = cluster.owner_of(owner_slot(cluster, f"g:{guest_id}"))
        if c_node != g_node:
            return customer_id, guest_id
    raise AssertionError("200 random pairs all landed on one node")


async def add_until_acked(
    http: httpx.AsyncClient, sku: str, qty: int = 1
) -> tuple[dict[str, Any], int]:
    """POST a line with one Idempotency-Key, retrying 503s with that key; (body, 503s seen)."""
    key = {"Idempotency-Key": f"add-{uuid.uuid4().hex}"}
    deadline = time.monotonic() + RETRY_DEADLINE_S
    for unavailable in range(MAX_TRIES):
        r = await http.post("/v1/cart/lines", json={"sku": sku, "qty": qty}, headers=key)
        if r.status_code in (200, 201):
            return r.json(), unavailable
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "store_unavailable", r.text
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sku} was not acknowledged within {RETRY_DEADLINE_S} s")


class Mirror:
    """What a device connected over the socket knows: every event it applied, in order."""

    def __init__(self, sock: Live) -> None:
        self.sock = sock
        self.events: list[dict[str, Any]] = []

    @property
    def revs(self) -> list[int]:
        return [e["rev"] for e in self.events]

    async def collect_until(self, rev: int, wait_s: float = 30.0) -> None:
        # One deadline, each read bounded by what is left of it (no nested timeouts).
        deadline = time.monotonic() + wait_s
        while not self.events or self.events[-1]["rev"] < rev:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = await self.sock.frame(left)
            except TimeoutError:
                raise AssertionError(
                    f"no event {rev} within {wait_s} s; the device has revs {self.revs}"
                ) from None
            assert frame["type"] == "event", frame
            self.events.append(frame["event"])


# Cluster-only behaviour --------------------------------------------------------------------


def test_every_key_of_an_owner_is_in_one_slot_on_one_node(
    cluster: RedisCluster3, customer_id: str
) -> None:
    slot = owner_slot(cluster, f"c:{customer_id}")
    assert cluster.owner_of(slot) in cluster.ports


async def test_merge_of_a_guest_on_another_node_moves_everything_once(
    client: httpx.AsyncClient, cluster: RedisCluster3, tokens: Tokens
) -> None:
    customer_id, guest_id = owners_on_two_nodes(cluster)
    customer = tokens.headers("customer", customer_id)
    guest_token = tokens.token("guest", guest_id)
    guest = bearer(guest_token)
    guest_slot = owner_slot(cluster, f"g:{guest_id}")
    customer_slot = owner_slot(cluster, f"c:{customer_id}")
    guest_node, customer_node = cluster.owner_of(guest_slot), cluster.owner_of(customer_slot)
    assert guest_slot != customer_slot
    assert guest_node != customer_node

    await add_line(client, customer, "A-1", 2)
    await add_line(client, customer, "MINE-1", 1)
    await add_item(client, customer, "default", "W-1")
    await add_line(client, guest, "A-1", 3)
    await add_line(client, guest, "G-1", 4)
    await add_item(client, guest, "default", "W-2")
    # The writes landed where the slot map says.
    assert any(k.endswith(":lines") for k in cluster.keys_in_slot(guest_slot))
    assert any(k.endswith(":lines") for k in cluster.keys_in_slot(customer_slot))
    rev_before = (await get_cart(client, customer))["rev"]

    r = await merge(client, customer, guest_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["already_merged"] is False
    assert body["rev"] == rev_before + 1
    expected = {line_id("A-1"): 5, line_id("MINE-1"): 1, line_id("G-1"): 4}
    assert quantities(body["cart"]) == expected

    cart = await get_cart(client, customer)
    assert cart["rev"] == rev_before + 1
    assert quantities(cart) == expected
    lists = (await client.get("/v1/wishlists", headers=customer)).json()["wishlists"]
    assert wishlist_skus(lists) == {"default": ["W-1", "W-2"]}
    assert (await event_types(client, customer)).count("cart.merged") == 1

    # The guest, on its own node, is closed: empty, refusing writes, only a tombstone left.
    guest_cart = await get_cart(client, guest)
    assert (guest_cart["rev"], guest_cart["lines"]) == (0, [])
    late = await client.post("/v1/cart/lines", json={"sku": "LATE"}, headers=guest)
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "guest_merged"
    assert cluster.keys_in_slot(guest_slot) == [OwnerKeys(f"g:{guest_id}").merge_claim]

    again = await merge(client, customer, guest_token)
    assert again.status_code == 200, again.text
    assert again.json()["already_merged"] is True
    assert quantities(await get_cart(client, customer)) == expected


async def test_a_socket_keeps_every_change_while_its_owner_slot_moves_between_nodes(
    instances: tuple[ServiceProcess, ServiceProcess],
    cluster: RedisCluster3,
    tokens: Tokens,
    customer_id: str,
) -> None:
    """Device A writes on instance 1 while the owner's slot is moved twice; device B, on
    instance 2 with sharded pub/sub, ends with every change exactly once, in order."""
    one, two = instances
    token = tokens.token("customer", customer_id)
    slot = owner_slot(cluster, f"c:{customer_id}")
    home = cluster.owner_of(slot)
    first_move, second_move = [p for p in cluster.ports if p != home]
    per_phase = 25
    acked: list[tuple[int, str]] = []
    unavailable = 0

    async def write(phase: str) -> None:
        nonlocal unavailable
        for n in range(per_phase):
            body, errors = await add_until_acked(a, f"{phase}-{n}")
            acked.append((body["rev"], body["line"]["sku"]))
            unavailable += errors
            await asyncio.sleep(0.01)  # a shopper's pace, so moves overlap the writes

    async with rest(one, token) as a, live(two, token) as b:
        await b.sync(0)
        device = Mirror(b)
        collecting = asyncio.create_task(device.collect_until(4 * per_phase, wait_s=60))
        try:
            await write("before")
            moves = []
            for phase, target in (("first", first_move), ("second", second_move)):
                writing = asyncio.create_task(write(f"during-{phase}"))
                moves.append(await asyncio.to_thread(cluster.migrate_slot, slot, target))
                await writing
            await write("after")
            await collecting
        finally:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        await b.quiet()

        assert cluster.owner_of(slot) == second_move
        assert all(moved >= 3 for moved in moves), moves  # meta, lines, log at least
        total = 4 * per_phase
        assert sorted(rev for rev, _ in acked) == list(range(1, total + 1))
        by_rev = dict(acked)
        assert [e["rev"] for e in device.events] == list(range(1, total + 1))
        assert [e["data"]["line"]["sku"] for e in device.events] == [
            by_rev[r] for r in range(1, total + 1)
        ]

        cart = (await a.get("/v1/cart")).json()
        assert cart["rev"] == total
        assert sorted(x["sku"] for x in cart["lines"]) == sorted(by_rev.values())
        assert {x["qty"] for x in cart["lines"]} == {1}
        history = (await a.get("/v1/cart/history", params={"since": 0})).json()
        assert history["complete"] is True
        assert [e["rev"] for e in history["events"]] == list(range(1, total + 1))

    # Instance two learned of each move from Redis ending its subscription, and renewed it.
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(two.metrics_url)).text
    rehomed = [ln for ln in metrics.splitlines() if ln.startswith("cartsync_pubsub_rehomed_total")]
    assert len(rehomed) == 1, metrics
    assert float(rehomed[0].split()[-1]) >= 2, rehomed

    # A fresh socket on either instance resumes from the moved slot as well.
    for instance in (one, two):
        async with live(instance, token) as c:
            assert c.hello["rev"] == total
            await c.sync(total - 5)
            assert [e["rev"] for e in await c.events(5)] == list(range(total - 4, total + 1))
            await c.quiet()
    print(
        f"\nslot {slot} moved {home} -> {first_move} -> {second_move}; 503s retried: {unavailable}"
    )
