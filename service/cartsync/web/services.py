"""What the app holds for its lifetime: store, token checks, rate limits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from limits import RateLimitItem, parse_many, strategies
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import MemoryStorage, storage_from_string
from limits.util import WindowStats
from starlette.requests import Request

from cartsync.auth.tokens import TokenIssuer, TokenVerifier
from cartsync.domain.principal import Principal, Role
from cartsync.errors import RateLimited
from cartsync.settings import Settings
from cartsync.storage.hub import Hub
from cartsync.storage.store import CartStore
from cartsync.web.inputs import bearer_token
from cartsync.web.metrics import Metrics


class _InProcess:
    """The synchronous moving window behind the asyncio limiter's two calls.

    Counting in this process's memory never waits, so the synchronous flavour serves an event
    loop as it is and sweeps expired entries on a timer thread at most every 10 ms; the asyncio
    memory storage starts a sweep after every hit, with an ``asyncio.to_thread`` hop per key
    (a tenth of a mutation's CPU). Same moving window, same budgets.
    """

    def __init__(self) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, item: RateLimitItem, *identity: str) -> bool:
        return self._limiter.hit(item, *identity)

    async def get_window_stats(self, item: RateLimitItem, *identity: str) -> WindowStats:
        return self._limiter.get_window_stats(item, *identity)


class RateLimits:
    """Per-principal request budgets (the ``limits`` library does the counting)."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.rate_limit_storage
        scheme = uri.split("://")[0].removeprefix("async+")
        self._limiter: _InProcess | MovingWindowRateLimiter
        if scheme == "memory":
            self._limiter = _InProcess()
        else:
            if not uri.startswith("async+"):
                uri = "async+" + uri  # the asyncio flavour of the same backend
            # The Redis backend defaults to coredis; we already ship redis-py.
            options = {"implementation": "redispy"} if "redis" in scheme else {}
            storage = storage_from_string(uri, **options)
            assert isinstance(storage, Storage)
            self._limiter = MovingWindowRateLimiter(storage)
        self._principal = parse_many(settings.rate_limit)
        self._service = parse_many(settings.service_rate_limit)
        self._guest_issue = parse_many(settings.guest_issue_rate_limit)
        self._claim = parse_many(settings.claim_rate_limit)

    async def principal(self, who: Principal) -> None:
        items = self._service if who.role is Role.SERVICE else self._principal
        await self._hit(items, "p", who.role.value, who.subject)

    async def claim(self, staff: str, store: str) -> None:
        """Code guessing is bounded per staff member and per store."""
        await self._hit(self._claim, "claim-staff", staff)
        await self._hit(self._claim, "claim-store", store)

    async def guest_issue(self, client: str) -> None:
        await self._hit(self._guest_issue, "guest", client)

    async def _hit(self, items: list[RateLimitItem], *identity: str) -> None:
        for item in items:
            if not await self._limiter.hit(item, *identity):
                stats = await self._limiter.get_window_stats(item, *identity)
                raise RateLimited(max(1, int(stats.reset_time - time.time()) + 1))


@dataclass
class Services:
    settings: Settings
    store: CartStore
    verifier: TokenVerifier
    issuer: TokenIssuer | None
    limits: RateLimits
    hub: Hub
    metrics: Metrics
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on SIGTERM: live sockets close with 1001 so clients reconnect elsewhere."""

    def authenticate(self, request: Request) -> Principal:
        return self.verifier.verify(bearer_token(request))

    async def rate_limit(self, who: Principal) -> None:
        await self.limits.principal(who)

    def client_address(self, request: Request) -> str:
        """The caller's address; X-Forwarded-For is believed only from trusted proxies."""
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in self.settings.trusted_proxies:
            return forwarded.split(",")[0].strip()
        return peer
