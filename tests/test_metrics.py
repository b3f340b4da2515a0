"""/metrics tells an operator what the service is doing, by route template and status."""

from __future__ import annotations

import json

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess


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
        before = _samples((await http.get("/metrics")).text)
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
            during = _samples((await http.get("/metrics")).text)
        after = _samples((await http.get("/metrics")).text)

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
