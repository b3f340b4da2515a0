"""The store's Lua, loaded once as a Redis Function library (Redis 7+) or sent as EVAL scripts.

The same source serves both: every file only defines functions (``mutate(keys, argv)`` and
``read(keys, argv)``, with the helpers they use), and each call sets its own state first. As a
Function library that code runs once, at ``FUNCTION LOAD``, and a call runs only the dispatcher;
as a script (Redis 6.2 has no Functions) it runs on every call. Which one is chosen once, by
trying ``FUNCTION LOAD``.

The library is named ``cartsync_<first 12 hex of the SHA-1 of its code>`` and so are its
functions (Redis keeps function names unique across libraries), so two versions of cartsync on
one Redis during a rolling deploy each call their own code. Old libraries stay until an operator
deletes them (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

log = logging.getLogger("cartsync.redis")

# The mutation code, joined in this order: hooks first, then mutate/ (prelude, one file per
# concern, the dispatcher last); each part uses only what the parts before it define.
_MUTATE_PARTS = (
    "events",
    "outbox",
    "restore",
    *(
        f"mutate/{part}"
        for part in ("prelude", "lines", "wishlists", "cart", "consent", "merge", "entry")
    ),
)
_NAME = "__LIBRARY__"


def _source(name: str) -> str:
    return (resources.files("cartsync.storage") / "lua" / f"{name}.lua").read_text()


MUTATE_SOURCE = "\n".join(_source(name) for name in _MUTATE_PARTS)
READ_SOURCE = _source("read")

# Each part in a block of its own: their locals share names. The mutation function keeps the
# default flags, as its script had (it writes; refused on a replica and, before it starts, when
# Redis is out of memory); the read declares it writes nothing, so it answers under maxmemory too.
_TEMPLATE = f"""do
{MUTATE_SOURCE}
redis.register_function{{function_name = '{_NAME}_mutate', callback = mutate}}
end
do
{READ_SOURCE}
redis.register_function{{function_name = '{_NAME}_read', callback = read, flags = {{'no-writes'}}}}
end
"""

LIBRARY = "cartsync_" + hashlib.sha1(_TEMPLATE.encode(), usedforsecurity=False).hexdigest()[:12]
LIBRARY_CODE = f"#!lua name={LIBRARY}\n" + _TEMPLATE.replace(_NAME, LIBRARY)


class StoreScripts:
    """Calls the store's Lua on one Redis (standalone, Sentinel or Cluster)."""

    def __init__(self, redis: Redis | RedisCluster, *, functions: bool = True) -> None:
        self._redis: Any = redis  # redis-py's stubs type FCALL's reply as sync-or-async
        self._eval_mutate = redis.register_script(MUTATE_SOURCE + "\nreturn mutate(KEYS, ARGV)\n")
        self._eval_read = redis.register_script(READ_SOURCE + "\nreturn read(KEYS, ARGV)\n")
        # None until the first call finds out whether this Redis has Functions.
        self.functions: bool | None = None if functions else False
        self._loading = asyncio.Lock()

    async def mutate(
        self,
        keys: Sequence[str | bytes],
        args: Sequence[str | bytes],
        *,
        wait: tuple[int, int] | None = None,
    ) -> Any:
        """Run the mutation; with ``wait`` (replicas, timeout in ms), WAIT right after it."""
        if self.functions is None:
            await self.prepare()
        if wait is not None:
            return await self._mutate_and_wait(keys, args, *wait)
        if not self.functions:
            return await self._eval_mutate(keys=keys, args=args)
        return await self._fcall(f"{LIBRARY}_mutate", keys, args)

    async def _mutate_and_wait(
        self,
        keys: Sequence[str | bytes],
        args: Sequence[str | bytes],
        replicas: int,
        timeout_ms: int,
    ) -> Any:
        """The script and WAIT in one pipeline, so on one connection and one round trip:
        WAIT waits only for the writes of the connection it is sent on, and sent on another
        pooled connection it would answer at once while no replica had the change."""

        async def send() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                if self.functions:
                    pipe.fcall(f"{LIBRARY}_mutate", len(keys), *keys, *args)
                else:
                    await self._eval_mutate(keys=keys, args=args, client=pipe)
                pipe.execute_command("WAIT", replicas, timeout_ms)
                return list(await pipe.execute(raise_on_error=False))

        outcomes = await send()
        if self.functions and _library_lost(outcomes[0]):
            await self.prepare()  # nothing ran: see _fcall
            outcomes = await send()
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return outcomes[0]

    async def read(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        if self.functions is None:
            await self.prepare()
        if not self.functions:
            return await self._eval_read(keys=keys, args=args)
        return await self._fcall(f"{LIBRARY}_read", keys, args)

    async def prepare(self) -> None:
        """Loads the library on every primary, or settles on scripts where Functions are missing."""
        async with self._loading:
            if self.functions is False:
                return
            try:
                # On a Cluster, redis-py sends FUNCTION LOAD to every primary.
                await self._redis.function_load(LIBRARY_CODE, replace=True)
            except rexc.ResponseError as exc:
                if not _no_functions(exc):
                    raise
                log.info(
                    "Redis refused FUNCTION LOAD (%s); calling the store's Lua by EVALSHA", exc
                )
                self.functions = False
                return
            self.functions = True

    async def _fcall(
        self, name: str, keys: Sequence[str | bytes], args: Sequence[str | bytes]
    ) -> Any:
        try:
            return await self._redis.fcall(name, len(keys), *keys, *args)
        except rexc.ResponseError as exc:
            if not _library_lost(exc):
                raise
        # Nothing ran: this node lost the library (restarted without persistence, a new primary,
        # FUNCTION FLUSH). Loaded again, the call is sent once more; the operation id still
        # makes a repeat harmless, as for any re-sent script.
        await self.prepare()
        return await self._redis.fcall(name, len(keys), *keys, *args)


def _library_lost(outcome: object) -> bool:
    """FCALL's answer when the node has no such function: the call did not run."""
    return isinstance(outcome, rexc.ResponseError) and "function not found" in str(outcome).lower()


def _no_functions(exc: rexc.ResponseError) -> bool:
    """Redis 6.2 (no FUNCTION command), or an ACL that does not allow it."""
    text = str(exc).lower()
    return "unknown command" in text or isinstance(exc, rexc.NoPermissionError)
