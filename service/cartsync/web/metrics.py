"""Prometheus metrics: HTTP by route and status, live sockets, events, Redis calls, pub/sub,
the process and the Python runtime; served on their own port (``metrics_app``), never the API's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cartsync.storage.hub import Hub, Published

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def runtime_registry() -> CollectorRegistry:
    """A new registry with process_* (CPU, memory, descriptors) and python_* (GC, version):
    prometheus-client's collectors, which read the process and share no state."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class Metrics:
    """One registry per app, so several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = runtime_registry()
        self.http = Histogram(
            "cartsync_http_request_duration_seconds",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sockets = Gauge(
            "cartsync_websocket_connections",
            "Open authenticated websockets",
            registry=self.registry,
        )
        self.events = Counter(
            "cartsync_events_pushed_total",
            "Event frames sent to websockets",
            registry=self.registry,
        )
        self.direct = Counter(
            "cartsync_event_frames_direct_total",
            "Of the event frames, those written straight to the connection (frame built once "
            "per event; no deflate, nothing else waiting to be sent)",
            registry=self.registry,
        )
        self.snapshots = Counter(
            "cartsync_snapshots_sent_total",
            "Snapshot frames sent to websockets",
            registry=self.registry,
        )
        self.overflows = Counter(
            "cartsync_send_queue_overflows_total",
            "Websockets closed (1013) because their send queue filled",
            registry=self.registry,
        )
        self.redis = Histogram(
            "cartsync_redis_call_duration_seconds",
            "Round trips to Redis by call",
            ["call"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "cartsync_redis_errors_total",
            "Redis calls that failed",
            ["call"],
            registry=self.registry,
        )
        self.registry.register(_TasksCollector())
        # labels() checks and locks on every call; each label set's child is looked up once.
        self._http: dict[tuple[str, str, int], Histogram] = {}
        self._redis: dict[str, Histogram] = {}

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request by method, route template (never the raw path) and status."""
        child = self._http.get((method, route, status))
        if child is None:
            child = self._http[method, route, status] = self.http.labels(method, route, str(status))
        child.observe(seconds)

    def observe_store(self, call: str, seconds: float, ok: bool) -> None:
        child = self._redis.get(call)
        if child is None:
            child = self._redis[call] = self.redis.labels(call)
        child.observe(seconds)
        if not ok:
            self.redis_errors.labels(call).inc()

    def watch_hub(self, hub: Hub) -> None:
        self.registry.register(_HubCollector(hub))
        hub.on_fanned_out = self._fanned_out

    def _fanned_out(self, event: Published) -> None:
        """Frames written straight to their sockets, counted once per event: two counter
        increments per socket were a tenth of a fan-out's CPU."""
        if event.written:
            self.events.inc(event.written)
            self.direct.inc(event.written)

    def render(self) -> Response:
        return Response(
            generate_latest(self.registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )


class _HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "cartsync_pubsub_reconnects",
            "Times the pub/sub connection was replaced",
            value=self._hub.reconnects,
        )
        yield CounterMetricFamily(
            "cartsync_pubsub_rehomed",
            "Subscriptions Redis ended while they had listeners (a Cluster slot moved), renewed",
            value=self._hub.rehomed,
        )
        yield GaugeMetricFamily(
            "cartsync_pubsub_channels", "Owners with local listeners", value=self._hub.channels
        )


class _TasksCollector(Collector):
    """Tasks alive in the event loop at scrape time: a leaked session shows up as growth."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            count = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside the event loop (no running loop)
            count = 0
        yield GaugeMetricFamily(
            "cartsync_asyncio_tasks", "asyncio tasks alive in the event loop", value=count
        )


def metrics_app(metrics: Metrics) -> Starlette:
    """/metrics (and /healthz for the port's own probe) for the private metrics port: the
    figures name routes, Redis calls and webhook endpoints, so they stay off the public port."""

    async def render(request: Request) -> Response:
        return metrics.render()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/metrics", render, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class WorkerMetrics:
    """The delivery worker's metrics (events/worker.py reports into it), in a given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox = Gauge(
            "cartsync_outbox_length",
            "Back-office events written and not yet delivered everywhere (all partitions)",
            registry=registry,
        )
        self.lag = Histogram(
            "cartsync_event_delivery_lag_seconds",
            "From the change to the endpoint's 2xx, by endpoint",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=registry,
        )
        self.attempts = Counter(
            "cartsync_webhook_attempts_total",
            "Delivery attempts by endpoint",
            ["endpoint"],
            registry=registry,
        )
        self.failures = Counter(
            "cartsync_webhook_failures_total",
            "Failed attempts by endpoint and status (an HTTP status, timeout, or the error)",
            ["endpoint", "status"],
            registry=registry,
        )
        self.dead = Counter(
            "cartsync_webhook_dead_letters_total",
            "Events given up by endpoint and reason",
            ["endpoint", "reason"],
            registry=registry,
        )

    def attempt(self, endpoint: str, outcome: str) -> None:
        self.attempts.labels(endpoint).inc()
        if not (outcome.isdigit() and 200 <= int(outcome) < 300):
            self.failures.labels(endpoint, outcome).inc()

    def delivered(self, endpoint: str, lag_s: float) -> None:
        self.lag.labels(endpoint).observe(lag_s)

    def dead_letter(self, endpoint: str, reason: str) -> None:
        self.dead.labels(endpoint, reason).inc()

    def outbox_length(self, length: int) -> None:
        self.outbox.set(length)
