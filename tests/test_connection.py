"""The Redis pool is bounded: beyond CARTSYNC_REDIS_MAX_CONNECTIONS a command waits for a free
connection, and one that waits longer than CARTSYNC_REDIS_TIMEOUT_SECONDS fails as unavailable."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from cartsync.settings import Settings
from cartsync.storage.connection import connect
from tests.support.processes import RedisProcess


def client(url: str, pool: int, timeout_s: float) -> Redis:
    settings = Settings.from_env(
        {
            "CARTSYNC_REDIS_URL": url,
            "CARTSYNC_DATA_DIR": "/nonexistent",
            "CARTSYNC_REDIS_MAX_CONNECTIONS": str(pool),
            "CARTSYNC_REDIS_TIMEOUT_SECONDS": str(timeout_s),
        }
    )
    redis = connect(settings)
    assert isinstance(redis, Redis)
    return redis


def opened(redis: Redis) -> int:
    pool = redis.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_commands_beyond_the_pool_wait_for_a_free_connection(
    redis_server: RedisProcess,
) -> None:
    redis = client(redis_server.url, pool=2, timeout_s=5.0)
    try:
        held = [await redis.connection_pool.get_connection() for _ in range(2)]
        waiting = [asyncio.create_task(redis.incr("pool-test")) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in waiting)  # the pool is used up: they wait
        for connection in held:
            await redis.connection_pool.release(connection)
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert opened(redis) == 2
        # Every command after the wait still finds a connection, and none is opened anew.
        await asyncio.gather(*(redis.incr("pool-test") for _ in range(20)))
        assert opened(redis) == 2
    finally:
        await redis.delete("pool-test")
        await redis.aclose()


async def test_a_command_that_waits_past_the_timeout_fails_and_the_pool_recovers(
    redis_server: RedisProcess,
) -> None:
    redis = client(redis_server.url, pool=1, timeout_s=0.3)
    try:
        held = await redis.connection_pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await redis.ping()
        await redis.connection_pool.release(held)
        assert await redis.ping()
        assert all(await asyncio.gather(*(redis.ping() for _ in range(10))))
        assert opened(redis) == 1
    finally:
        await redis.aclose()
