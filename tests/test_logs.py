"""Logs an operator can parse: JSON lines with a request id, and never a token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, service_env


@pytest.fixture(scope="module")
def logged(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(redis_server.url, tmp_path_factory.mktemp("logs"), CARTSYNC_LOG_FORMAT="json")
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


def _lines(proc: ServiceProcess) -> list[dict[str, object]]:
    out = []
    for line in proc.log_path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait_for(proc: ServiceProcess, rid: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        hits = [x for x in _lines(proc) if x.get("request_id") == rid]
        if hits:
            return hits
        time.sleep(0.05)
    raise AssertionError(f"no log line for request {rid}")


def test_each_request_logs_one_json_line_with_its_id_and_route(
    logged: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    r = httpx.post(
        logged.url + "/v1/cart/lines",
        json={"sku": "LOG-1"},
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "req-abc.1"},
    )
    assert r.status_code == 201
    assert r.headers["x-request-id"] == "req-abc.1"
    (line,) = _wait_for(logged, "req-abc.1")
    assert line["logger"] == "cartsync.access"
    assert line["route"] == "/v1/cart/lines"
    assert line["status"] == 201
    assert line["method"] == "POST"
    assert isinstance(line["duration_ms"], float)


def test_a_bad_or_missing_request_id_is_replaced_and_tokens_never_logged(
    logged: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    r = httpx.get(
        logged.url + "/v1/cart",
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "bad id with spaces"},
    )
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid != "bad id with spaces"
    assert len(rid) == 32
    _wait_for(logged, rid)
    r = httpx.get(logged.url + "/v1/cart", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    _wait_for(logged, r.headers["x-request-id"])
    text = logged.log_path.read_text()
    assert token not in text
    assert "not-a-token" not in text
