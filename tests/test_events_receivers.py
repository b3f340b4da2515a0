"""The JS receiver example (clients/js/examples/webhook-receiver.mjs) gets a signed
``cart.checked_out`` from a real service and worker, verified by npm's standardwebhooks."""

from __future__ import annotations

import json
import selectors
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.browser import node
from tests.conftest import Tokens
from tests.support.events import SECRET, events_env, start_service, webhooks_file
from tests.support.processes import ROOT, RedisProcess, free_port

JS_DIR = ROOT / "clients" / "js"


def read_lines(proc: subprocess.Popen[str], until: str, timeout_s: float) -> list[str]:
    """The receiver's output lines up to the first containing ``until`` (bounded in time)."""
    assert proc.stdout is not None
    lines: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if until in line:
                    return lines
    raise AssertionError(f"no line with {until!r} within {timeout_s} s: {lines}")


@pytest.mark.slow
def test_the_js_receiver_example_verifies_a_checkout(
    private_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    node.npm_ci(JS_DIR)
    port = free_port()
    receiver = subprocess.Popen(
        [node.node(), "examples/webhook-receiver.mjs"],
        cwd=JS_DIR,
        env={"PATH": "/usr/bin:/bin", "WEBHOOK_SECRET": SECRET, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_lines(receiver, "listening", 20)
        hooks = webhooks_file(
            tmp_path, {"name": "js", "url": f"http://127.0.0.1:{port}/", "secret": SECRET}
        )
        service = start_service(
            private_redis, tmp_path, events_env(hooks, CARTSYNC_WORKER="embedded")
        )
        customer = f"cust-{uuid.uuid4().hex[:8]}"
        try:
            h = tokens.headers("customer", customer)
            with httpx.Client(base_url=service.url, headers=h, timeout=10) as http:
                http.post("/v1/cart/lines", json={"sku": "A"}).raise_for_status()
                http.post("/v1/cart/checkout").raise_for_status()
            lines = read_lines(receiver, "cart.checked_out", 20)
        finally:
            service.stop()
        event = json.loads(lines[-1])
        assert event["customer_id"] == customer
        assert event["id"].startswith("evt_")
    finally:
        receiver.kill()
        receiver.wait(timeout=5)
        if receiver.stdout is not None:
            receiver.stdout.close()
