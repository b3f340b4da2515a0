"""The webhooks file refused at start-up (through the CLI), the pull API, the embedded worker
and its metrics, and one script call per mutation with events on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.events import SECRET, Receiver, events_env, eventually, receiving, start_service
from tests.support.processes import RedisProcess, ServiceProcess, free_port, service_env
from tests.test_round_trips import _commands_during

GOOD = {"name": "crm", "url": "https://crm.example/hooks", "secret": SECRET}


def run_cli(tmp_path: Path, command: list[str], webhooks: str, suffix: str = ".yaml") -> Any:
    path = tmp_path / f"webhooks{suffix}"
    path.write_text(webhooks)
    env = service_env(
        "redis://127.0.0.1:1/0",  # never reached: the file is checked first
        tmp_path / "data",
        **events_env(path),
    )
    return subprocess.run(
        [sys.executable, "-m", "cartsync", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("webhooks", "says"),
    [
        ("endpoints: [", "is not valid YAML"),
        ("hooks: []", "top-level 'endpoints' list"),
        (
            json.dumps({"endpoints": [{**GOOD, "events": ["cart.checked_out", "cart.bought"]}]}),
            "endpoint #1 ('crm'): unknown event type cart.bought",
        ),
        (
            json.dumps({"endpoints": [GOOD, {**GOOD, "name": "mail", "secret": "s3cr3t"}]}),
            "endpoint #2 ('mail'): a secret is 'whsec_' followed by base64",
        ),
        (
            json.dumps({"endpoints": [{**GOOD, "secret": "whsec_not base64!"}]}),
            "endpoint #1 ('crm'): the secret after 'whsec_' is not base64",
        ),
        (
            json.dumps({"endpoints": [{**GOOD, "url": "http://crm.example/hooks"}]}),
            "endpoint #1 ('crm'): url 'http://crm.example/hooks' is not https",
        ),
        (
            json.dumps({"endpoints": [GOOD, GOOD]}),
            "endpoint 'crm': the name is used twice",
        ),
    ],
    ids=["yaml", "shape", "event-type", "secret", "base64", "https", "duplicate"],
)
@pytest.mark.parametrize("command", [["worker"], ["events", "dead", "--endpoint", "crm"]])
def test_a_bad_webhooks_file_stops_the_worker_with_exit_2_naming_the_entry(
    tmp_path: Path, webhooks: str, says: str, command: list[str]
) -> None:
    done = run_cli(tmp_path, command, webhooks)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "CARTSYNC_WEBHOOKS_FILE" in done.stderr


def test_serve_with_the_embedded_worker_refuses_a_bad_file_too(tmp_path: Path) -> None:
    bad = json.dumps({"endpoints": [{**GOOD, "url": "ftp://crm.example/"}]})
    path = tmp_path / "webhooks.json"
    path.write_text(bad)
    env = service_env(
        "redis://127.0.0.1:1/0",
        tmp_path / "data",
        **events_env(path, CARTSYNC_WORKER="embedded"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "cartsync", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "endpoint #1 ('crm'): url 'ftp://crm.example/' is not an https URL" in done.stderr


def test_http_is_accepted_for_loopback_and_with_allow_http(tmp_path: Path) -> None:
    loopback = json.dumps({"endpoints": [{**GOOD, "url": "http://127.0.0.1:9/hooks"}]})
    done = run_cli(tmp_path, ["events", "dead", "--endpoint", "nope"], loopback, ".json")
    assert done.returncode == 2  # the file is fine; the endpoint name is not
    assert "no endpoint 'nope'" in done.stderr


@pytest.fixture
def evented(private_redis: RedisProcess, tmp_path: Path) -> Any:
    """A service with events on and its worker in-process (CARTSYNC_WORKER=embedded)."""
    receiver = Receiver(free_port())
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps({"endpoints": [{**GOOD, "url": receiver.url}]}))
    service = start_service(private_redis, tmp_path, events_env(path, CARTSYNC_WORKER="embedded"))
    try:
        yield service, receiver
    finally:
        service.stop()


async def test_pull_api_pages_the_same_events_and_long_polls(
    evented: tuple[ServiceProcess, Receiver], tokens: Tokens
) -> None:
    service, receiver = evented
    shop = tokens.headers("service", "backoffice")
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    h = tokens.headers("customer", customer)
    async with receiving(receiver), httpx.AsyncClient(base_url=service.url, timeout=40) as http:
        assert (await http.get("/v1/events", headers=h)).status_code == 403
        r = await http.get("/v1/events", headers=shop, params={"types": "cart.bought"})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "unknown_event_type"
        assert r.json()["error"]["field"] == "types"
        assert (
            await http.get("/v1/events", headers=shop, params={"after": "x"})
        ).status_code == 422
        start = (await http.get("/v1/events", headers=shop)).json()
        cursor = start["next"]
        while start["events"]:  # earlier tests' events, if any: skip to the end
            start = (await http.get("/v1/events", headers=shop, params={"after": cursor})).json()
            cursor = start["next"]

        async def buy() -> None:
            await http.post("/v1/cart/lines", headers=h, json={"sku": "A"})
            await http.post("/v1/wishlists/default/items", headers=h, json={"sku": "W"})
            await http.post("/v1/cart/checkout", headers=h)

        waiting = http.get(
            "/v1/events",
            headers=shop,
            params={"after": cursor, "wait": "20", "types": "cart.checked_out"},
        )
        polled, _ = await asyncio.gather(waiting, buy())
        assert polled.status_code == 200
        page = polled.json()
        assert [e["type"] for e in page["events"]] == ["cart.checked_out"]
        checked_out = page["events"][0]
        assert checked_out["customer_id"] == customer
        everything = (
            await http.get("/v1/events", headers=shop, params={"after": cursor, "wait": "5"})
        ).json()
        await eventually(lambda: len(receiver.ids()) == 2, "webhook deliveries", 20)
        pulled = [e["id"] for e in everything["events"]]
        delivered = [r.event["id"] for r in receiver.received]
        assert pulled == delivered  # the same ids, in the same order
        assert checked_out["id"] in pulled


async def test_the_embedded_worker_reports_metrics(
    evented: tuple[ServiceProcess, Receiver], tokens: Tokens
) -> None:
    service, receiver = evented
    h = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:8]}")
    async with receiving(receiver), httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        await http.post("/v1/cart/lines", headers=h, json={"sku": "A"})
        await http.post("/v1/cart/checkout", headers=h)
        await eventually(lambda: len(receiver.ids()) == 1, "the checkout delivered", 20)
        text = (await http.get(service.metrics_url)).text
    assert 'cartsync_webhook_attempts_total{endpoint="crm"} 1.0' in text
    assert 'cartsync_event_delivery_lag_seconds_count{endpoint="crm"} 1.0' in text
    assert "cartsync_outbox_length" in text


def test_a_mutation_with_events_on_is_still_one_script_call(
    private_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    env = service_env(private_redis.url, tmp_path / "service", **events_env())
    service = ServiceProcess(env).start()
    try:
        headers = tokens.headers("customer", f"cust-{uuid.uuid4().hex[:8]}")
        with httpx.Client(base_url=service.url, headers=headers) as http:
            http.post("/v1/cart/lines", json={"sku": "WARM-UP"}).raise_for_status()

            def checkout() -> None:
                http.post("/v1/cart/lines", json={"sku": "A"}).raise_for_status()
                http.post("/v1/cart/checkout").raise_for_status()

            commands = _commands_during(private_redis, checkout)
        # Besides the two scripts, at most the batched wake-up for the workers (OutboxHints),
        # sent beside the requests, not as part of them.
        assert [c for c in commands if c != "SADD"] == ["FCALL", "FCALL"]
        assert commands.count("SADD") <= 2
        with private_redis.client() as r:
            outboxes = [k for k in r.scan_iter("cs:*:outbox")]
            assert sum(r.xlen(k) for k in outboxes) == 1  # the checkout's event, no worker yet
    finally:
        service.stop()
