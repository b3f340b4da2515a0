"""``create_app(settings)``: where the adapters meet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from redis.asyncio.cluster import RedisCluster
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from cartsync import pages
from cartsync.auth.providers import providers
from cartsync.auth.tokens import TokenIssuer, TokenKeys, TokenVerifier
from cartsync.catalog import Breaker, HttpCatalog
from cartsync.domain.pricing import Pricing
from cartsync.errors import CartsyncError
from cartsync.events.runner import build_worker, embedded_worker, outbox_config
from cartsync.settings import Settings
from cartsync.storage.connection import connect
from cartsync.storage.hub import Hub
from cartsync.storage.outbox import OutboxHints
from cartsync.storage.presence import PresenceBoard
from cartsync.storage.store import CartStore
from cartsync.web import (
    asyncapi,
    errors,
    live,
    logs,
    openapi,
    routes_account,
    routes_cart,
    routes_consent,
    routes_events,
    routes_stores,
    routes_wishlists,
)
from cartsync.web.commands import COMMANDS
from cartsync.web.endpoints import (
    Answer,
    Endpoint,
    Mode,
    PublicRoute,
    command_endpoint,
    json_response,
    owner_view,
)
from cartsync.web.logs import RequestLogMiddleware
from cartsync.web.metrics import Metrics, WorkerMetrics
from cartsync.web.routing import IndexedRouter
from cartsync.web.services import RateLimits, Services
from cartsync.web.wheel import Wheel

ENDPOINTS: list[Endpoint] = [
    *routes_cart.ENDPOINTS,
    *routes_wishlists.ENDPOINTS,
    *(command_endpoint(c) for c in COMMANDS),
    *routes_account.ENDPOINTS,
    *routes_consent.ENDPOINTS,
]


async def openapi_json(request: Request) -> Response:
    return json_response(request.app.state.openapi)


PUBLIC: list[PublicRoute] = [
    *routes_account.PUBLIC,
    *routes_consent.PUBLIC,
    *routes_events.PUBLIC,
    *routes_stores.PUBLIC,
    PublicRoute(
        "GET",
        "/openapi.json",
        openapi_json,
        "This document",
        {200: Answer("The OpenAPI 3.1 document", dict[str, Any])},
        name="openapi",
    ),
    PublicRoute(
        "GET",
        "/asyncapi.json",
        asyncapi.asyncapi_json,
        "The AsyncAPI 3.0 document of the /v1/ws websocket",
        {200: Answer("The AsyncAPI 3.0 document", dict[str, Any])},
        name="asyncapi",
    ),
]


def create_app(settings: Settings) -> Starlette:
    """The cartsync ASGI app; Redis is connected in the lifespan, never at import."""
    keys = TokenKeys.from_settings(settings)
    try:
        issuer: TokenIssuer | None = TokenIssuer(keys, settings)
    except ValueError:
        issuer = None
    spec = openapi.build(ENDPOINTS, PUBLIC)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client for every outbound call (identity providers' keys, the catalogue); no
        # redirects followed.
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(5.0), follow_redirects=False, trust_env=False
        )
        verifier = TokenVerifier(keys, settings, providers(settings, http))
        redis = connect(settings)
        hints = OutboxHints(redis) if settings.events else None
        store = CartStore(
            redis,
            limits=settings.limits,
            currency=settings.default_currency,
            event_log_max=settings.event_log_max,
            history_s=settings.history_days * 86400,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            guest_ttl_s=settings.guest_data_ttl_s,
            customer_ttl_s=settings.customer_data_ttl_s,
            observe=metrics.observe_store,
            publish_command="SPUBLISH" if isinstance(redis, RedisCluster) else "PUBLISH",
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            outbox=outbox_config(settings),
            hints=hints,
        )
        hub = Hub(redis, heartbeat_s=settings.hub_heartbeat_s)
        # Deadlines checked to a quarter of a ping interval (at most a second late).
        wheel = Wheel(min(1.0, settings.ws_ping_interval_s / 4))
        presence = PresenceBoard(
            redis,
            heartbeat_s=settings.ws_ping_interval_s,
            publish_command="SPUBLISH" if isinstance(redis, RedisCluster) else "PUBLISH",
        )
        app.state.services = Services(
            settings=settings,
            store=store,
            verifier=verifier,
            issuer=issuer,
            limits=RateLimits(settings),
            hub=hub,
            metrics=metrics,
            wheel=wheel,
            presence=presence,
            pricing=Pricing(
                catalog(settings, http), settings.catalog_failure, settings.default_currency
            ),
        )
        metrics.watch_hub(hub)
        await hub.start()
        await wheel.start()
        await presence.start()
        for remote in verifier.remote:
            await remote.start()  # in the background: a provider that is down only delays ready
        try:
            async with contextlib.AsyncExitStack() as running:
                if hints is not None:
                    running.push_async_callback(_stop, asyncio.create_task(hints.run()))
                if settings.worker == "embedded":  # back-office events delivered in-process
                    observer = WorkerMetrics(metrics.registry)
                    worker = build_worker(redis, settings, observer)
                    await running.enter_async_context(embedded_worker(worker))
                yield
        finally:
            for remote in verifier.remote:
                await remote.stop()
            await presence.stop()
            await wheel.stop()
            await hub.stop()
            await redis.aclose()
            await http.aclose()

    live_route = WebSocketRoute(live.PATH, live.websocket_endpoint)
    routes: list[BaseRoute] = [
        *(Route(r.path, r.view, methods=[r.method]) for r in PUBLIC),
        live_route,
        *pages.routes(settings),
    ]
    modes: tuple[tuple[str, Mode], ...] = (
        ("/v1", "self"),
        ("/v1/customers/{customer_id}", "customer"),
        ("/v1/grants/{grant_id}", "grant"),
    )
    for prefix, mode in modes:
        routes.extend(_owner_routes(prefix, mode))
    logs.configure(settings.log_format, settings.log_level)
    middleware = [Middleware(RequestLogMiddleware, metrics=metrics)]
    if settings.cors_origins:
        # The web shop's own JS calls cartsync from the shop's origin.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Idempotency-Key",
                    "If-Match",
                    "If-None-Match",
                    "X-Device-Id",
                ],
                expose_headers=["ETag", "Idempotent-Replayed", "Retry-After"],
                max_age=600,
            )
        )
    app = _App(
        live_route,
        RequestLogMiddleware(live.asgi_endpoint, metrics=metrics),
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            CartsyncError: errors.on_cartsync_error,
            HTTPException: errors.on_http_error,
            Exception: errors.on_unexpected,
        },
    )
    # A path with a stray trailing slash is a 404 with the JSON error body like any other
    # unknown route, not a bare 307 to a URL the client did not ask for.
    app.router.redirect_slashes = False
    app.state.metrics = metrics
    app.state.openapi = spec
    return app


def catalog(settings: Settings, http: httpx.AsyncClient) -> HttpCatalog | None:
    """The shop's catalogue when CARTSYNC_CATALOG_URL names one."""
    if settings.catalog_url is None:
        return None
    return HttpCatalog(
        http,
        settings.catalog_url,
        timeout_s=settings.catalog_timeout_s,
        cache_ttl_s=settings.catalog_cache_s,
        breaker=Breaker(settings.catalog_breaker_failures, settings.catalog_breaker_reset_s),
    )


class _App(Starlette):
    """Starlette, with the live socket taken before its middleware stack, and an indexed
    router (web/routing.py).

    Every layer of the stack keeps a suspended frame on each open socket for its whole life
    (about 4 KB of an idle socket's memory). The live endpoint closes every failure with a
    code itself, so it only needs the request id and the access line (RequestLogMiddleware).
    """

    def __init__(
        self,
        live_route: WebSocketRoute,
        live_app: ASGIApp,
        *,
        routes: list[BaseRoute],
        lifespan: Any,
        **options: Any,
    ) -> None:
        super().__init__(routes=routes, lifespan=lifespan, **options)
        self.router = IndexedRouter(routes, lifespan=lifespan)  # as Starlette builds its own
        self._live_route = live_route
        self._live_app = live_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self._live_route.path:
            scope["app"] = self
            scope["route"] = self._live_route
            await self._live_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a lifespan task, waiting a bounded time (a cancel may land on a Redis reply)."""
    task.cancel()
    await asyncio.wait({task}, timeout=2)


def _owner_routes(prefix: str, mode: Mode) -> list[BaseRoute]:
    """One route per path, so a wrong method gets a 405 whose Allow lists every method."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for ep in ENDPOINTS:
        if mode == "grant" and not ep.staff:
            continue
        by_path.setdefault(prefix + ep.path, {})[ep.method] = owner_view(ep, mode)
    return [Route(path, _by_method(views), methods=list(views)) for path, views in by_path.items()]


def _by_method(
    views: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        return await views["GET" if request.method == "HEAD" else request.method](request)

    return dispatch
