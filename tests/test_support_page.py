"""The /support page in a real headless Chromium (tests/browser/support.mjs): lookup, the story
in plain words, filters and paging, bad input, a restore the customer's phone shows live, and
axe-core with no serious or critical violation. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.browser import node
from tests.conftest import Tokens
from tests.support.processes import ROOT, RedisProcess, ServiceProcess, service_env
from tests.test_browser import FLOW_TIMEOUT_S, run_scenario


def test_support_page_is_served_with_its_files(service: ServiceProcess) -> None:
    for path, needle in (
        ("/support", "/static/support.js"),
        ("/static/support.js", "X-Support-Reason"),
        ("/static/support.css", "ol.timeline"),
    ):
        response = httpx.get(service.url + path, timeout=10)
        assert response.status_code == 200, path
        assert needle in response.text, path
    assert (
        "default-src 'self'"
        in httpx.get(service.url + "/support").headers["content-security-policy"]
    )


def write_story(url: str, tokens: Tokens, customer: str) -> None:
    """26 changes: socks on the phone, a hat on the laptop, a scarf by the shop's tablet, 22
    notes from the laptop, then the phone empties the cart."""
    me = tokens.headers("customer", customer)
    shop = tokens.headers("service", "shop-backend")
    with httpx.Client(base_url=url, timeout=10) as c:
        phone, laptop = {**me, "X-Device-Id": "phone"}, {**me, "X-Device-Id": "laptop"}
        c.post("/v1/cart/lines", json={"sku": "SOCKS", "qty": 2, "title": "Socks"}, headers=phone)
        c.post("/v1/cart/lines", json={"sku": "HAT", "title": "Hat"}, headers=laptop)
        c.post(
            f"/v1/customers/{customer}/cart/lines",
            json={"sku": "SCARF", "title": "Scarf"},
            headers={**shop, "X-Device-Id": "tablet-oslo"},
        ).raise_for_status()
        for i in range(22):
            c.put("/v1/cart/note", json={"note": f"note {i}"}, headers=laptop).raise_for_status()
        c.delete("/v1/cart", headers=phone).raise_for_status()
        assert c.get("/v1/cart", headers=me).json()["rev"] == 26


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_an_agent_finds_the_story_and_puts_the_cart_back(
    redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    node.npm_ci(ROOT / "tests" / "browser")
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service")).start()
    customer = f"cust-{uuid.uuid4().hex[:10]}"
    try:
        write_story(service.url, tokens, customer)
        output = run_scenario(
            "support.mjs",
            service,
            tokens.token("customer", customer),
            tokens.token("staff", "emp-1", store="oslo"),
            CARTSYNC_SUPPORT_TOKEN=tokens.token("support", "emma"),
            CARTSYNC_CUSTOMER_ID=customer,
        )
        print(output)
        me = tokens.headers("customer", customer)
        export = httpx.get(service.url + "/v1/me/export", headers=me, timeout=10).json()
    finally:
        service.stop()
    assert output.count("0 serious or critical") == 3
    assert sorted(line["sku"] for line in export["cart"]["lines"]) == ["HAT", "SCARF", "SOCKS"]
    assert export["events"][-1]["type"] == "cart.restored"
    # The refused lookup (no reason) read nothing; every other look is in the export.
    reasons = {(r["agent"], r["reason"]) for r in export["support_reads"]}
    assert reasons == {("emma", "ticket 4711: “my cart is empty”")}
    assert re.search(r"restored in ([\d.]+) s", output)
    for name in ("support-lookup.png", "support-restored.png", "phone-restored.png"):
        assert (ROOT / "artifacts" / "screenshots" / name).stat().st_size > 0
