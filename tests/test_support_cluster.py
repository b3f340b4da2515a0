"""Customer service on a 3-master Redis Cluster: the support tests of tests/test_support.py run
unchanged against cartsync with ``CARTSYNC_REDIS_CLUSTER=true`` (the restore's read script,
the audit list and the log's snapshots all live in the owner's slot)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import test_support
from tests.support.processes import ServiceProcess, service_env
from tests.support.topologies import RedisCluster3


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Overrides conftest's ``service``: everything in this module runs on a Cluster."""
    with RedisCluster3(tmp_path_factory.mktemp("support-cluster")) as cluster:
        env = service_env(
            cluster.seed_url,
            tmp_path_factory.mktemp("support-cluster-service"),
            CARTSYNC_REDIS_CLUSTER="true",
        )
        proc = ServiceProcess(env).start()
        try:
            yield proc
        finally:
            proc.stop()


REUSED = (
    test_support.test_support_restores_the_cart_as_one_logged_change,
    test_support.test_every_revision_restores_to_exactly_what_the_customer_saw,
    test_support.test_restore_is_idempotent_and_if_match_aware,
    test_support.test_support_reads_need_a_reason_and_the_export_lists_them,
    test_support.test_erasing_the_customer_erases_the_record_of_support_reads,
)
# pytest collects test functions from the module's globals: bind each under its own name.
globals().update({test.__name__: test for test in REUSED})
agent = test_support.agent  # the fixture the reused tests take
