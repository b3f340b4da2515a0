"""Tracing: a mutation's trace reaches an OTLP/HTTP receiver, continuing the caller's
``traceparent`` down to Redis and on to the catalogue; a websocket op gets a span; with tracing
off, the service runs without the SDK installed."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.conftest import Tokens
from tests.support.events import (
    SECRET,
    WorkerProcess,
    events_env,
    eventually,
    receiving,
    start_service,
    target_env,
)
from tests.support.events import Receiver as WebhookReceiver
from tests.support.processes import RedisProcess, ServiceProcess, free_port, service_env


@dataclass(frozen=True)
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    service: str
    attributes: dict[str, object]


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in s.attributes}
                    span = Span(
                        name=s.name,
                        kind=s.kind,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        service=resource.get("service.name", ""),
                        attributes=attributes,
                    )
                    with self.lock:
                        self.spans.append(span)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def all(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _value(value: object) -> object:
    field = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, field) if field else None


def eventually_spans(receiver: Receiver, trace_id: str, names: set[str]) -> list[Span]:
    """The trace's spans once every name in ``names`` arrived (the exporter batches)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        spans = receiver.trace(trace_id)
        if names <= {s.name for s in spans}:
            return spans
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id}: {[s.name for s in receiver.trace(trace_id)]}")


def ancestors(span: Span, spans: list[Span]) -> list[str]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    parent = by_id.get(span.parent_id)
    for _ in range(len(spans)):
        if parent is None:
            break
        chain.append(parent.name)
        parent = by_id.get(parent.parent_id)
    return chain


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        found.thread.join(timeout=5)


class Catalogue:
    """The shop's product API on loopback: every SKU asked is a 1.00 EUR product; it keeps each
    call's traceparent."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        seen = self.traceparents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("traceparent"))
                skus = parse_qs(urlsplit(self.path).query).get("sku", [])
                products = [
                    {"sku": sku, "title": "Traced", "unit_price": "1.00", "currency": "EUR"}
                    for sku in skus
                ]
                body = json.dumps({"products": products}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture(scope="module")
def catalogue() -> Iterator[Catalogue]:
    found = Catalogue()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        found.thread.join(timeout=5)


@pytest.fixture(scope="module")
def traced(
    redis_server: RedisProcess,
    receiver: Receiver,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    env = service_env(
        redis_server.url,
        tmp_path_factory.mktemp("traced"),
        CARTSYNC_CATALOG_URL=catalogue.url,
        CARTSYNC_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_SERVICE_NAME="cartsync-under-test",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_a_mutation_continues_the_callers_trace_down_to_redis_and_the_catalogue(
    traced: ServiceProcess,
    receiver: Receiver,
    catalogue: Catalogue,
    tokens: Tokens,
    customer_id: str,
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(
        traced.url + "/v1/cart/lines",
        json={"sku": "TRACE-1"},
        headers={
            **tokens.headers("customer", customer_id),
            "traceparent": f"00-{trace_id}-{caller_span}-01",
            "X-Request-Id": f"trace-{trace_id[:8]}",
        },
    )
    assert r.status_code == 201

    spans = eventually_spans(receiver, trace_id, {"POST /v1/cart/lines", "FCALL"})
    (server,) = [s for s in spans if s.name == "POST /v1/cart/lines"]
    assert server.kind == ProtoSpan.SPAN_KIND_SERVER
    assert server.parent_id == caller_span  # the caller's traceparent was honoured
    assert server.service == "cartsync-under-test"
    assert server.attributes["http.route"] == "/v1/cart/lines"
    # One FCALL of the store's Function library (loaded by /readyz before any request).
    redis_calls = [s for s in spans if s.attributes.get("db.system") == "redis"]
    assert "FCALL" in {s.name for s in redis_calls}
    for call in redis_calls:
        assert ancestors(call, spans) == [server.name], call  # the request's children
    # Redis arguments are "?" in spans: no owner key, no cart content leaves in a trace.
    assert customer_id not in json.dumps([s.attributes for s in spans])

    # The catalogue was asked for the line's price inside the trace, and told so.
    (asked,) = [s for s in spans if s.kind == ProtoSpan.SPAN_KIND_CLIENT and s.name == "GET"]
    assert ancestors(asked, spans) == [server.name]
    assert f"00-{trace_id}-{asked.span_id}-01" in catalogue.traceparents

    deadline = time.monotonic() + 5
    logged: list[dict[str, object]] = []
    while not logged and time.monotonic() < deadline:
        lines = traced.log_path.read_text().splitlines()
        records = [json.loads(x) for x in lines if x.startswith("{")]
        logged = [x for x in records if x.get("request_id") == f"trace-{trace_id[:8]}"]
        time.sleep(0.05)
    assert [x["trace_id"] for x in logged] == [trace_id]


async def test_a_websocket_op_gets_a_span_with_its_redis_call(
    traced: ServiceProcess, receiver: Receiver, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    url = traced.url.replace("http", "ws") + "/v1/ws"
    before = {s.span_id for s in receiver.all()}
    async with websockets.connect(url, subprotocols=["cartsync.v1", "bearer." + token]) as ws:  # type: ignore[list-item]
        await ws.recv()  # hello
        op_frame = {"type": "op", "id": "op-1", "name": "add_line", "body": {"sku": "W"}}
        await ws.send(json.dumps(op_frame))
        for _ in range(5):
            frame = json.loads(await ws.recv())
            if frame["type"] != "ping":
                break
        assert frame["type"] in ("ack", "result", "event"), frame

    deadline = time.monotonic() + 15
    op: list[Span] = []
    while not op and time.monotonic() < deadline:
        op = [s for s in receiver.all() if s.name == "ws add_line" and s.span_id not in before]
        await asyncio.sleep(0.05)
    assert len(op) == 1, [s.name for s in receiver.all() if s.span_id not in before]
    spans = eventually_spans(receiver, op[0].trace_id, {"ws add_line", "FCALL"})
    scripts = [s for s in spans if s.name == "FCALL"]
    assert scripts
    assert all(s.parent_id == op[0].span_id for s in scripts)


def test_with_tracing_off_the_service_runs_without_the_sdk_installed(
    redis_server: RedisProcess, tmp_path: Path, tokens: Tokens, customer_id: str
) -> None:
    """``sys.modules['opentelemetry'] = None`` makes every opentelemetry import fail, as in
    an install without the ``otel`` extra."""
    port, env = free_port(), service_env(redis_server.url, tmp_path)
    traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    env["CARTSYNC_METRICS_PORT"] = str(free_port())
    code = (
        "import sys; sys.modules['opentelemetry'] = None; "
        "from cartsync.cli import main; sys.exit(main())"
    )
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline, ready = time.monotonic() + 30, False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready, log.read_text()
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/cart/lines",
            json={"sku": "NO-OTEL"},
            headers={
                **tokens.headers("customer", customer_id),
                "traceparent": traceparent,
            },
        )
        assert r.status_code == 201, r.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "opentelemetry" not in log.read_text()


async def test_a_webhook_delivery_carries_a_traceparent_of_an_exported_span(
    private_redis: RedisProcess, receiver: Receiver, tmp_path: Path, tokens: Tokens
) -> None:
    """``cartsync worker`` with OTEL_* set: each delivery is a client span, sent along."""
    hook = WebhookReceiver(free_port())
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps({"endpoints": [{"name": "crm", "url": hook.url, "secret": SECRET}]}))
    service = start_service(private_redis, tmp_path, events_env(path))
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "cartsync-worker-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    worker = WorkerProcess(
        target_env(private_redis, tmp_path, events_env(path, **otel)), tmp_path / "worker.log"
    ).start()
    try:
        h = tokens.headers("customer", f"cust-{secrets.token_hex(4)}")
        async with receiving(hook), httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            assert (await http.post("/v1/cart/lines", headers=h, json={"sku": "A"})).is_success
            assert (await http.post("/v1/cart/checkout", headers=h)).is_success
            await eventually(lambda: len(hook.received) >= 1, "the checkout delivered", 20)
    finally:
        worker.stop()
        service.stop()
    traceparent = hook.received[0].headers["traceparent"]
    _, trace_id, span_id, _ = traceparent.split("-")
    spans = eventually_spans(receiver, trace_id, {"POST"})
    (delivery,) = [s for s in spans if s.span_id == span_id]
    assert delivery.kind == ProtoSpan.SPAN_KIND_CLIENT
    assert delivery.service == "cartsync-worker-under-test"


def test_tracing_asked_for_without_the_sdk_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    env = service_env("redis://127.0.0.1:1/0", tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://x")
    code = (
        "import sys; sys.modules['opentelemetry'] = None; "
        "from cartsync.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = [json.loads(x) for x in done.stderr.splitlines() if "OTEL_" in x]
    assert "pip install 'cartsync[otel]'" in line["message"]
