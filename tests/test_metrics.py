"""/metrics (on the private metrics port) tells an operator what the service is doing, by
route template and status; the alert examples in docs/operations.md name real metrics."""

from __future__ import annotations

import json
import re

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from cartsync.storage.hub import Hub
from cartsync.web.metrics import Metrics, WorkerMetrics
from tests.conftest import Tokens
from tests.support.processes import ROOT, RedisProcess, ServiceProcess


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_requests_redis_calls_and_sockets_are_counted(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    headers = tokens.headers("customer", customer_id)
    async with httpx.AsyncClient(base_url=service.url, headers=headers) as http:
        before = _samples((await http.get(service.metrics_url)).text)
        for _ in range(3):
            assert (await http.post("/v1/cart/lines", json={"sku": "M-1"})).status_code in (
                200,
                201,
            )
        assert (await http.get("/v1/cart/lines/L9")).status_code == 405
        ws_url = service.url.replace("http", "ws") + "/v1/ws"
        token = tokens.token("customer", customer_id)
        async with websockets.connect(
            ws_url, subprotocols=["cartsync.v1", "bearer." + token]
        ) as ws:
            await ws.recv()  # hello
            await ws.send(json.dumps({"type": "sync", "since": 0}))
            for _ in range(3):
                assert json.loads(await ws.recv())["type"] == "event"
            during = _samples((await http.get(service.metrics_url)).text)
        after = _samples((await http.get(service.metrics_url)).text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"method": "POST", "route": "/v1/cart/lines"}
    assert (
        delta("cartsync_http_request_duration_seconds_count", **route, status="201")
        + delta("cartsync_http_request_duration_seconds_count", **route, status="200")
        == 3
    )
    assert (
        delta(
            "cartsync_http_request_duration_seconds_count",
            method="GET",
            route="/v1/cart/lines/{line_id}",
            status="405",
        )
        == 1
    )
    assert delta("cartsync_redis_call_duration_seconds_count", call="mutate") >= 3
    assert delta("cartsync_events_pushed_total") >= 3
    assert during[("cartsync_websocket_connections", ())] >= 1
    assert ("cartsync_pubsub_reconnects_total", ()) in after
    assert ("cartsync_pubsub_rehomed_total", ()) in after
    # Raw paths with ids never become labels: cardinality stays bounded.
    assert not any("L9" in str(labels) for _, labels in after)


def test_metrics_are_on_their_own_port_with_process_figures_and_not_on_the_api_port(
    service: ServiceProcess,
) -> None:
    assert httpx.get(service.url + "/metrics").status_code == 404
    scraped = httpx.get(service.metrics_url)
    assert scraped.status_code == 200
    names = {s.name for f in text_string_to_metric_families(scraped.text) for s in f.samples}
    assert {"process_resident_memory_bytes", "process_open_fds", "python_info"} <= names
    assert "cartsync_websocket_connections" in names
    assert httpx.get(service.url + "/readyz").status_code == 200  # probes stay on the API port


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def promql_metric_names(expression: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, ranges and
    strings that are not functions, aggregations or keywords."""
    bare = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", expression)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        word = found.group()
        if bare[found.end() :].lstrip().startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


async def test_the_alert_examples_name_only_metrics_cartsync_exports(
    redis_server: RedisProcess,
) -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert blocks, "docs/operations.md lost its promql alert examples"
    named = set()
    for line in "\n".join(blocks).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            named |= promql_metric_names(line)
    assert len(named) >= 10, named

    # Every family the service and its worker register, whether or not it has samples yet.
    metrics = Metrics()
    WorkerMetrics(metrics.registry)
    redis = Redis.from_url(redis_server.url)
    try:
        metrics.watch_hub(Hub(redis))
        exported = set()
        for family in metrics.registry.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
            }.get(family.type, ("",))
            exported |= {family.name + suffix for suffix in suffixes}
            exported |= {sample.name for sample in family.samples}
    finally:
        await redis.aclose()
    assert sorted(named - exported) == []


def test_the_promql_parser_finds_names_and_skips_functions_and_labels() -> None:
    expression = 'sum by (le) (rate(a_total{status=~"5.."}[5m])) / b_count > 0.1 and on() c'
    assert promql_metric_names(expression) == {"a_total", "b_count", "c"}
