"""Building the Redis client from settings: standalone, Sentinel or Cluster."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.typing import EncodableT

from cartsync.settings import Settings

log = logging.getLogger("cartsync.redis")


class _Cluster(RedisCluster):
    """redis-py's asyncio cluster client, with one of its failures named for what it is and
    FCALL routed without a round trip.

    When a node fails, its error handling closes connections that other commands are still
    writing on (e.g. ``aclose()`` after CLUSTERDOWN closes every node's connections); such a
    command then fails inside redis-py with AttributeError or TypeError on the stream that
    went away (``'NoneType' object has no attribute 'writelines'``) instead of ConnectionError,
    and the request would end in a 500. It is a lost connection: raise it as one, so that it
    answers 503 and the client retries, like any other.
    """

    async def _determine_slot(self, command: str, *args: Any) -> int:
        # redis-py reads EVALSHA's keys from its arguments but asks a server for FCALL's
        # (COMMAND GETKEYS, FCALL's keys are "movable"): a round trip more per change, always
        # to the node it first connected to, so a change on any shard waits for that one node
        # (hung, every FCALL times out). FCALL names its keys just as EVALSHA does.
        if command.upper() in ("FCALL", "FCALL_RO") and len(args) >= 2:
            slots = {self.keyslot(key) for key in args[2 : 2 + int(args[1])]}
            if len(slots) == 1:
                return slots.pop()
        return await super()._determine_slot(command, *args)

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, TypeError) as exc:
            log.warning("a Redis connection was closed under a command (%r); answering 503", exc)
            raise RedisConnectionError(f"connection closed under the command: {exc}") from exc


class _Pool(BlockingConnectionPool):
    """redis-py's blocking pool, which takes a free connection the plain pool's way.

    The blocking pool takes a condition, arms a timeout and records a wait on every command,
    and notifies on every release: ~25 µs of CPU per Redis call, a tenth of a cart mutation's
    own (bench/request_cost.py). While a connection is free and no command waits for one,
    taking and giving it back is the plain pool's step; once the pool runs out, every command
    waits in the blocking pool's order, and its releases notify them.
    """

    _waiting = 0
    """Commands inside the blocking pool's wait: while any is, every step goes its way."""

    def _contended(self) -> bool:
        return bool(self._waiting) or self._condition.locked()

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if not self._contended() and self.can_get_connection():
            try:
                return await ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                pass  # another command took the last one meanwhile: wait like the rest
        self._waiting += 1
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        if self._contended():
            await super().release(connection)
        else:
            await ConnectionPool.release(self, connection)


def connect(settings: Settings) -> Redis | RedisCluster:
    """A pooled client that fails fast while Redis is away and reconnects by itself.

    One retry only: every script call carries an operation id the script deduplicates, so a
    re-sent script is harmless, but a long retry loop would hold requests that should get a 503.
    With Sentinel, every new connection asks the sentinels where the master is now, so a
    failover is followed without a restart.
    """
    timeout = settings.redis_timeout_s
    connect_timeout = min(settings.redis_timeout_s, 1.0)
    if settings.redis_sentinels:
        sentinels = [
            (host, int(port))
            for host, _, port in (s.rpartition(":") for s in settings.redis_sentinels)
        ]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": connect_timeout},
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
        )
        master: Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
            health_check_interval=15,
        )
        return master
    if settings.redis_url is None:
        raise ValueError("no Redis URL configured")
    if settings.redis_cluster:
        # Without `retry`, redis-py's cluster client retries 10 times: a request to a master
        # that hangs (its host is gone) would wait 11 socket timeouts instead of failing fast
        # with 503. One retry still follows a failover or a slot move (it reloads the slot map
        # first); MOVED and ASK redirects do not count as retries.
        return _Cluster.from_url(
            str(settings.redis_url),
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
        )
    # A bounded pool that waits for a free connection rather than opening another: a burst
    # of sockets opening at once would otherwise leave as many idle connections behind as it
    # had requests in flight (redis-py never shrinks a pool). Waiting longer than the Redis
    # timeout answers 503 like any other unavailable Redis.
    pool = _Pool.from_url(
        str(settings.redis_url),
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        health_check_interval=15,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections
