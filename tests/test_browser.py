"""The staff tablet and the demo phone in a real headless Chromium (tests/browser/flow.mjs).

A customer's phone shows a hand-off code, a store tablet opens the cart with it, each sees the
other's changes live, and the tablet loses the cart when the customer revokes the access.
Screenshots of both pages go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.browser import node
from tests.conftest import Tokens
from tests.support.processes import ROOT, RedisProcess, ServiceProcess, service_env

BROWSER_DIR = ROOT / "tests" / "browser"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLOW_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def browser_packages() -> Path:
    node.npm_ci(BROWSER_DIR)
    return BROWSER_DIR


def test_pages_are_served(service: ServiceProcess) -> None:
    for path, needle in (
        ("/staff", "/static/staff.js"),
        ("/demo", "/static/demo.js"),
        ("/static/cartsync.js", "export class CartsyncClient"),
        ("/static/style.css", ".flash"),
    ):
        response = httpx.get(service.url + path, timeout=10)
        assert response.status_code == 200, path
        assert needle in response.text, path


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_handoff_flow_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)")
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service")).start()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")},
            "CARTSYNC_URL": service.url,
            "CARTSYNC_CUSTOMER_TOKEN": tokens.token("customer", f"shopper-{uuid.uuid4().hex[:8]}"),
            "CARTSYNC_STAFF_TOKEN": tokens.token("staff", "alice", store="s1"),
            "CARTSYNC_SCREENSHOTS": str(SCREENSHOTS),
            "CHROMIUM": CHROMIUM,
        }
        code, output = node.run(
            ["tests/browser/flow.mjs"], cwd=ROOT, env=env, timeout_s=FLOW_TIMEOUT_S
        )
        log = service.log()
    finally:
        service.stop()
    assert code == 0, f"the browser flow failed ({code}):\n{output}\n\nservice log (tail):\n{log}"
    for name in ("phone.png", "tablet.png", "tablet-ended.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0, name
