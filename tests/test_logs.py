"""Logs an operator can parse: JSON lines with a request id, and never a token."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cartsync.domain.principal import Owner, Role
from cartsync.storage.keys import OwnerKeys
from cartsync.web import logs
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess, free_port, service_env

UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


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


def test_a_500_logs_one_json_line_with_the_request_id_and_the_exception(
    logged: ServiceProcess, redis_server: RedisProcess, tokens: Tokens, customer_id: str
) -> None:
    """A real failure: the owner's meta key holds a string, so the read script's HGETALL fails
    (WRONGTYPE) and redis-py raises an error nothing maps. The 500 leaves one JSON line with
    the request id and the exception, and no plain-text traceback anywhere in the stream."""
    meta = OwnerKeys(Owner(Role.CUSTOMER, customer_id).id).meta
    with redis_server.client() as r:
        r.set(meta, "not a hash", ex=60)
    start = len(logged.log_path.read_bytes())
    headers = tokens.headers("customer", customer_id)
    r500 = httpx.get(logged.url + "/v1/cart", headers={**headers, "X-Request-Id": "req-500.1"})
    assert r500.status_code == 500
    assert r500.json() == {
        "error": {"code": "internal_error", "message": "something went wrong on our side"}
    }
    assert r500.headers["x-request-id"] == "req-500.1"
    # A request after it: once its line is written, anything the 500 printed is written too.
    after = httpx.get(logged.url + "/healthz", headers={"X-Request-Id": "req-500.2"})
    assert after.status_code == 200
    _wait_for(logged, "req-500.2")
    _wait_for(logged, "req-500.1")
    text = logged.log_path.read_bytes()[start:].decode()
    assert "Traceback" not in "".join(x for x in text.splitlines() if not x.startswith("{"))
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]  # every line is JSON
    errors = [x for x in lines if x.get("level") == "ERROR"]
    (error,) = errors
    assert error["request_id"] == "req-500.1"
    assert error["error.type"] == "redis.exceptions.ResponseError"
    assert "WRONGTYPE" in str(error["error.message"])
    stack = str(error["error.stack_trace"])
    assert "Traceback (most recent call last)" in stack
    assert "ResponseError" in stack
    assert "exc_info" not in error
    access = [x for x in lines if x.get("request_id") == "req-500.1" and x is not error]
    assert [(x["logger"], x["status"]) for x in access] == [("cartsync.access", 500)]
    assert all(x.get("request_id") is not None for x in lines if x["logger"] != "hypercorn")


def test_log_unexpected_writes_one_json_line_with_the_exception() -> None:
    """What the websocket side calls before closing with 1011."""
    stream = io.StringIO()
    log = logging.getLogger(f"cartsync.test.{uuid.uuid4().hex}")
    log.propagate = False
    log.addHandler(logs.handler("json", stream))
    token = logs.request_id.set("req-ws.1")
    try:
        try:
            {}["missing"]
        except KeyError as exc:
            logs.log_unexpected(log, "live session failed", exc)
    finally:
        logs.request_id.reset(token)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "live session failed"
    assert record["level"] == "ERROR"
    assert record["request_id"] == "req-ws.1"
    assert record["error.type"] == "KeyError"
    assert record["error.message"] == "'missing'"
    assert "test_log_unexpected_writes_one_json_line" in record["error.stack_trace"]


def test_every_stderr_line_of_a_json_service_is_json_with_a_utc_time(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Start-up (ours and Hypercorn's), requests and shutdown: a log shipper parses them all."""
    port = free_port()
    env = service_env(
        redis_server.url,
        tmp_path / "data",
        CARTSYNC_LOG_FORMAT="json",
        CARTSYNC_METRICS_PORT=str(free_port()),
        CARTSYNC_JWT_SECRETS="",  # the development-secret warning is one of the lines
    )
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cartsync", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "/readyz" not in err.read_text():
            try:
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/nowhere", timeout=5).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    assert {r["logger"] for r in records} >= {"cartsync.cli", "hypercorn.error", "cartsync.access"}
    assert any("development secret" in r["message"] for r in records)
    assert any("Running on" in r["message"] for r in records)  # Hypercorn's own start-up line
    for record in records:
        assert UTC_TIME.fullmatch(record["time"]), record


def test_every_stderr_line_of_a_json_worker_is_json(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    metrics = free_port()
    env = service_env(
        redis_server.url,
        tmp_path / "data",
        CARTSYNC_LOG_FORMAT="json",
        CARTSYNC_EVENTS="true",
        CARTSYNC_WORKER_METRICS_PORT=str(metrics),
    )
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cartsync", "worker"], env=env, stdout=stderr, stderr=stderr
        )
    try:
        deadline, up = time.monotonic() + 30, False
        while not up and time.monotonic() < deadline and proc.poll() is None:
            try:
                up = httpx.get(f"http://127.0.0.1:{metrics}/healthz", timeout=1).is_success
            except httpx.TransportError:
                time.sleep(0.1)
        assert up, err.read_text()
        scraped = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert "process_resident_memory_bytes" in scraped  # process and Python metrics on
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in err.read_text().splitlines()]
    assert any("webhook endpoints" in r["message"] for r in records)
    assert any("Running on" in r["message"] for r in records)  # its metrics port, by Hypercorn
    for record in records:
        assert UTC_TIME.fullmatch(record["time"]), record
