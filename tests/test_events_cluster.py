"""The back-office event suite on a 3-master Redis Cluster (tests/support/topologies.py).

The tests are the standalone ones, imported; ``private_redis`` is overridden so that their
service and workers run against the Cluster (one outbox partition per slot). Not repeated
here: the restart with AOF (a standalone Redis's persistence) and the MONITOR-based round-trip
count (test_round_trips covers the script; the Cluster runs the same one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cartsync.storage.keys import OwnerKeys, partition_of
from tests.support.events import ClusterTarget
from tests.support.topologies import RedisCluster3
from tests.test_events_api import evented, test_pull_api_pages_the_same_events_and_long_polls
from tests.test_events_delivery import (
    folder,
    http,
    test_a_worker_killed_mid_delivery_is_finished_by_another,
    test_every_event_arrives_signed_through_500s_timeouts_and_refused_connections,
    test_per_customer_order_holds_with_many_customers_and_two_workers,
)
from tests.test_events_lifecycle import (
    test_deadlines_fire_once_per_idle_period_and_never_after_checkout_or_for_guests,
    test_erasure_is_the_last_event_even_with_deliveries_pending,
)

pytestmark = pytest.mark.slow

__all__ = [
    "evented",
    "folder",
    "http",
    "test_a_worker_killed_mid_delivery_is_finished_by_another",
    "test_deadlines_fire_once_per_idle_period_and_never_after_checkout_or_for_guests",
    "test_erasure_is_the_last_event_even_with_deliveries_pending",
    "test_every_event_arrives_signed_through_500s_timeouts_and_refused_connections",
    "test_per_customer_order_holds_with_many_customers_and_two_workers",
    "test_pull_api_pages_the_same_events_and_long_polls",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    with RedisCluster3(tmp_path_factory.mktemp("events-cluster")) as nodes:
        yield nodes


@pytest.fixture
def private_redis(cluster: RedisCluster3) -> ClusterTarget:
    """Overrides conftest's: each test starts from an empty Cluster."""
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            node.flushall()
    return ClusterTarget(cluster.seed_url)


def test_an_owners_outbox_partition_is_in_the_owners_slot(cluster: RedisCluster3) -> None:
    """What lets one script write the change and its event on a Cluster."""
    for n in range(300):
        owner = f"c:cust-{n}"
        slot = cluster.keyslot(OwnerKeys(owner).meta)
        side = partition_of(owner, 16384)
        assert cluster.keyslot(side.outbox) == slot
        assert cluster.keyslot(side.queue("crm")) == slot
