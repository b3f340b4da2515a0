"""What the app holds for its lifetime: store, token checks, rate limits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request

from cartsync.auth.tokens import TokenIssuer, TokenVerifier
from cartsync.domain.pricing import Pricing
from cartsync.domain.principal import Principal, Role
from cartsync.errors import RateLimited
from cartsync.settings import Settings
from cartsync.storage.hub import Hub
from cartsync.storage.presence import PresenceBoard
from cartsync.storage.store import CartStore
from cartsync.web.inputs import bearer_token
from cartsync.web.metrics import Metrics
from cartsync.web.moving_window import MovingWindow
from cartsync.web.wheel import Wheel


class RateLimits:
    """Per-principal request budgets: counted in this process (``moving_window``) for
    ``memory://``, else by the ``limits`` library in the storage the URI names."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.rate_limit_storage
        self._local: MovingWindow | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        if uri.removeprefix("async+").split("://")[0] == "memory":
            self._local = MovingWindow()
        else:
            if not uri.startswith("async+"):
                uri = "async+" + uri  # the asyncio flavour of the same backend
            # The Redis backend defaults to coredis; we already ship redis-py.
            options = {"implementation": "redispy"} if "redis" in uri.split("://")[0] else {}
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
        if self._local is not None:
            wait = self._local.hit(items, identity)
            if wait > 0:
                raise RateLimited(max(1, int(wait) + 1))
            return
        assert self._limiter is not None
        for item in items:
            if not await self._limiter.hit(item, *identity):
                stats = await self._limiter.get_window_stats(item, *identity)
                raise RateLimited(max(1, int(stats.reset_time - time.time()) + 1))


@runtime_checkable
class Drainable(Protocol):
    def drain(self) -> None:
        """End now: the server is shutting down."""


@dataclass
class Services:
    settings: Settings
    store: CartStore
    verifier: TokenVerifier
    issuer: TokenIssuer | None
    limits: RateLimits
    hub: Hub
    metrics: Metrics
    pricing: Pricing
    """Names and prices lines: from the shop's catalogue when one is configured."""
    wheel: Wheel
    presence: PresenceBoard
    """Deadlines of the live sockets (pings, silence, token and grant ends)."""
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on SIGTERM: live sockets close with 1001 so clients reconnect elsewhere."""

    def drain(self) -> None:
        """Start shutting down: every live socket ends now, new ones are refused."""
        self.draining.set()
        for item in self.wheel.items():
            if isinstance(item, Drainable):
                item.drain()

    async def authenticate(self, request: Request) -> Principal:
        return await self.verifier.verify(bearer_token(request))

    async def rate_limit(self, who: Principal) -> None:
        await self.limits.principal(who)

    def client_address(self, request: Request) -> str:
        """The caller's address; X-Forwarded-For is believed only from trusted proxies."""
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in self.settings.trusted_proxies:
            return forwarded.split(",")[0].strip()
        return peer
