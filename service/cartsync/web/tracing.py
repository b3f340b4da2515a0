"""OpenTelemetry tracing, off unless the standard ``OTEL_*`` variables turn it on.

On, a request gets a server span (continuing the caller's ``traceparent``), each Redis command
a client span under it, each outbound httpx call (identity providers' keys, the catalogue,
webhook deliveries) a client span whose ``traceparent`` goes out with it, and each websocket op
a span of its own (``op_span``). Log lines carry the current ``trace_id``.

The SDK and instrumentations are the ``otel`` extra and imported only when tracing is on, so
the service runs without them installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from cartsync.settings import SettingsError

_SERVICE_NAME = "cartsync"
_tracer: Any = None
"""The tracer while tracing is on; None keeps every hook below a no-op costing one check."""


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Tracing is on when an OTLP endpoint or ``OTEL_TRACES_EXPORTER=otlp`` is set, unless
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return exporter == "otlp" or any(env.get(name) for name in endpoints)


def require(env: Mapping[str, str] = os.environ) -> None:
    """Stop start-up (SettingsError) when OTEL_* asks for tracing the install cannot do."""
    if not wanted(env):
        return
    try:
        found = importlib.util.find_spec("opentelemetry.sdk") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SettingsError(
            "OTEL_* variables turn tracing on, but the OpenTelemetry packages are not installed:"
            " pip install 'cartsync[otel]', or unset OTEL_EXPORTER_OTLP_ENDPOINT"
        )


@contextlib.contextmanager
def enabled(env: Mapping[str, str] = os.environ) -> Iterator[None]:
    """Set up the SDK for the process when ``wanted``; on exit, flush what is still queued."""
    global _tracer
    if not wanted(env):
        yield
        return
    require(env)
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over this default;
    # the provider reads OTEL_TRACES_SAMPLER*, the exporter OTEL_EXPORTER_OTLP_*, the batch
    # processor OTEL_BSP_*, and the global propagator OTEL_PROPAGATORS (W3C by default).
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or _SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("cartsync")
    try:
        yield
    finally:
        _tracer = None
        HTTPXClientInstrumentor().uninstrument()
        RedisInstrumentor().uninstrument()
        provider.shutdown()  # exports the spans still batched (bounded by OTEL_BSP_EXPORT_TIMEOUT)


def asgi(app: ASGIApp) -> ASGIApp:
    """``app`` with a server span per HTTP request when tracing is on; websockets pass by
    (a socket lives for hours: its ops get spans of their own, see ``op_span``)."""
    if _tracer is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def method_only(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # The raw path holds owner and grant ids; the route template replaces it once known.
        return str(scope.get("method", "HTTP")), {}

    traced = OpenTelemetryMiddleware(
        app, default_span_details=method_only, exclude_spans=["receive", "send"]
    )

    async def split(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await traced(scope, receive, send)
        else:
            await app(scope, receive, send)

    return split


def name_request(method: str, route: str | None) -> None:
    """Name the current server span by route template (low cardinality, like the metrics)."""
    if _tracer is None or route is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


@contextlib.contextmanager
def op_span(op: str) -> Iterator[None]:
    """A span around one websocket op, so its Redis calls have a parent."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(f"ws {op}", attributes={"cartsync.ws.op": op}):
        yield


def trace_id() -> str | None:
    """The current trace id as 32 hex digits, for log lines; None when there is none."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
