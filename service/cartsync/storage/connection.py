"""Building the Redis client from settings."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from cartsync.settings import Settings


def connect(settings: Settings) -> Redis:
    """A pooled client that fails fast while Redis is away and reconnects by itself.

    One retry only: every script call carries an operation id the script deduplicates, so a
    re-sent script is harmless, but a long retry loop would hold requests that should get a 503.
    """
    if settings.redis_url is None:
        raise ValueError("no Redis URL configured")
    return Redis.from_url(
        str(settings.redis_url),
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=min(settings.redis_timeout_s, 1.0),
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        health_check_interval=15,
        max_connections=256,
    )
