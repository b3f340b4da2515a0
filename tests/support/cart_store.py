"""A ``CartStore`` on a test's Redis, configured as the service configures it by default."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.settings import Settings
from cartsync.storage.store import CartStore

_DEFAULTS = Settings.from_env({"CARTSYNC_REDIS_URL": "redis://x", "CARTSYNC_DATA_DIR": "/x"})


def cart_store(
    redis: Redis | RedisCluster, settings: Settings = _DEFAULTS, *, functions: bool = True
) -> CartStore:
    """The store ``service/cartsync/web/app.py`` builds, without its metrics, hub hints and
    outbox (none of the tests that use it look at them)."""
    return CartStore(
        redis,
        limits=settings.limits,
        currency=settings.default_currency,
        event_log_max=settings.event_log_max,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        guest_ttl_s=settings.guest_data_ttl_s,
        customer_ttl_s=settings.customer_data_ttl_s,
        functions=functions,
    )
