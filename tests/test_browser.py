"""The staff tablet and the demo phone in a real headless Chromium (tests/browser/*.mjs).

A customer's phone shows a hand-off code, a store tablet opens the cart with it, each sees the
other's changes live, and the tablet loses the cart when the customer revokes the access
(flow.mjs) or when the grant's time runs out (expiry.mjs); with a catalogue, the tablet shows
its names, prices and a subtotal (catalogue.mjs). Screenshots of both pages go to
artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.browser import node
from tests.conftest import Tokens
from tests.support.catalog import Catalogue
from tests.support.host import HostApp
from tests.support.oidc import Provider, keycloak_claims
from tests.support.processes import ROOT, RedisProcess, ServiceProcess, service_env
from tests.support.stores import write_stores

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


def run_scenario(
    script: str, service: ServiceProcess, customer_token: str, staff_token: str, **extra: str
) -> str:
    """Run one tests/browser script against ``service``; its output, or the test fails."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")},
        "CARTSYNC_URL": service.url,
        "CARTSYNC_CUSTOMER_TOKEN": customer_token,
        "CARTSYNC_STAFF_TOKEN": staff_token,
        "CARTSYNC_SCREENSHOTS": str(SCREENSHOTS),
        "CHROMIUM": CHROMIUM,
        **extra,
    }
    code, output = node.run(
        [f"tests/browser/{script}"], cwd=ROOT, env=env, timeout_s=FLOW_TIMEOUT_S
    )
    if code != 0:
        pytest.fail(
            f"{script} failed ({code}):\n{output}\n\nservice log (tail):\n{service.log()}",
            pytrace=False,
        )
    # What axe-core said of each screen (tests/browser/axe.mjs), and latencies, beside the shots.
    tallies = [line for line in output.splitlines() if line.startswith(("axe ", "latency "))]
    (SCREENSHOTS / f"axe-{script.removesuffix('.mjs')}.txt").write_text("\n".join(tallies) + "\n")
    return output


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_handoff_flow_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service")).start()
    try:
        run_scenario(
            "flow.mjs",
            service,
            tokens.token("customer", f"shopper-{uuid.uuid4().hex[:8]}"),
            tokens.token("staff", "alice", store="s1"),
        )
    finally:
        service.stop()
    for name in ("phone.png", "tablet.png", "tablet-ended.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0, name
    # Every screen on both viewports: the phone's pages at tablet size and the other way round.
    for name in ("phone@tablet.png", "tablet@phone.png", "tablet-dev-signin@phone.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0, name


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_the_tablet_shows_catalogue_names_prices_and_subtotal_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    started = time.time()
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    with Catalogue() as catalogue:
        catalogue.add("TSHIRT-1", "Organic T-shirt", "19.90")
        catalogue.add("JEANS-2", "Slim jeans", "49.00")
        catalogue.add("MUG-7", "Blue mug", "7.50")
        env = service_env(
            redis_server.url, tmp_path / "service", CARTSYNC_CATALOG_URL=catalogue.url
        )
        service = ServiceProcess(env).start()
        try:
            run_scenario(
                "catalogue.mjs",
                service,
                tokens.token("customer", customer),
                tokens.token("staff", "carol", store="s1"),
            )
            with httpx.Client(base_url=service.url, timeout=10) as http:
                mine = tokens.headers("customer", customer)
                history = http.get("/v1/cart/history?since=0", headers=mine).json()["events"]
                cart = http.get("/v1/cart", headers=mine).json()
        finally:
            service.stop()
    # The service's own reading of the order agrees with what the tablet and phone showed.
    [order] = [e["data"]["checkout"] for e in history if e["type"] == "cart.checked_out"]
    assert [(ln["title"], ln["qty"], ln["priced_by"]) for ln in order["lines"]] == [
        ("Organic T-shirt", 1, "catalog"),
        ("Slim jeans", 2, "catalog"),
        ("Blue mug", 1, "catalog"),
    ]
    assert order["note"] == "Gift wrap, please"
    assert (cart["lines"], cart["item_count"]) == ([], 0)
    for name in ("tablet-catalogue.png", "phone-catalogue.png", "phone-checkout.png"):
        shot = (SCREENSHOTS / name).stat()
        assert shot.st_size > 0, name
        assert shot.st_mtime >= started - 1, f"{name} is not from this run"


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_handoff_by_typed_code_and_by_camera_with_presence_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    started = time.time()
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service")).start()
    try:
        output = run_scenario(
            "handoff.mjs",
            service,
            tokens.token("customer", customer),
            tokens.token("staff", "emma", store="s1"),
            CARTSYNC_WORKDIR=str(tmp_path),
        )
        with httpx.Client(base_url=service.url, timeout=10) as http:
            mine = tokens.headers("customer", customer)
            history = http.get("/v1/cart/history?since=0", headers=mine).json()["events"]
    finally:
        service.stop()
    # Chromium on Linux has no BarcodeDetector: the vendored jsQR read the fake camera's frames.
    assert re.search(r"^scanned with (jsQR|BarcodeDetector)$", output, re.MULTILINE), output
    ends = [e["actor"] for e in history if e["type"] == "grant.revoked"]
    assert ends == [{"role": "staff", "id": "emma", "store": "s1"}] * 2, ends
    shots = ("phone-helped.png", "tablet-typed.png", "tablet-scanning.png", "tablet-resumed.png")
    for name in shots:
        shot = (SCREENSHOTS / name).stat()
        assert shot.st_mtime >= started - 1, f"{name} is not from this run"


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_offline_taps_count_and_survive_a_reload_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service")).start()
    try:
        run_scenario(
            "offline.mjs",
            service,
            tokens.token("customer", customer),
            tokens.token("staff", "emma", store="s1"),
        )
        with httpx.Client(base_url=service.url, timeout=10) as http:
            mine = tokens.headers("customer", customer)
            history = http.get("/v1/cart/history?since=0", headers=mine).json()["events"]
    finally:
        service.stop()
    # Each tap once, in order, as a change of one: 1 -> 2 -> 3.
    assert [(e["type"], e["data"]["line"]["qty"]) for e in history] == [
        ("line.added", 1),
        ("line.updated", 2),
        ("line.updated", 3),
    ]


STAFF_IDLE_S = 6
"""The tablet's idle limit in the sign-in scenario: the scenario waits it out once."""


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_staff_sign_in_through_the_provider_and_idle_sign_out_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    with Provider(path="/realms/shop") as provider:
        provider.add_key("RSA", "kc-rsa-1")
        provider.login = lambda: keycloak_claims(
            provider, "emma", ["store-staff"], store_id="s1", exp=int(time.time()) + 600
        )
        env = service_env(
            redis_server.url,
            tmp_path / "service",
            CARTSYNC_OIDC_ISSUER=provider.issuer,
            CARTSYNC_OIDC_ROLE_CLAIM="realm_access.roles",
            CARTSYNC_OIDC_ROLES="customer=shopper,staff=store-staff",
            CARTSYNC_OIDC_STORE_CLAIM="store_id",
            CARTSYNC_STAFF_SIGNIN_ISSUER=provider.issuer,
            CARTSYNC_STAFF_IDLE_SECONDS=str(STAFF_IDLE_S),
        )
        service = ServiceProcess(env).start()
        provider.clients["cartsync-tablet"] = f"{service.url}/staff"
        customer_token = tokens.token("customer", customer)
        header, claims, signature = customer_token.split(".")
        try:
            run_scenario(
                "signin.mjs",
                service,
                customer_token,
                "(none: the tablet signs in through the provider)",
                CARTSYNC_BAD_TOKEN=f"{header}.{claims}.{signature[::-1]}",
                CARTSYNC_WORKDIR=str(tmp_path),
                CARTSYNC_STAFF_IDLE_SECONDS=str(STAFF_IDLE_S),
            )
            with httpx.Client(base_url=service.url, timeout=10) as http:
                mine = tokens.headers("customer", customer)
                history = http.get("/v1/cart/history?since=0", headers=mine).json()["events"]
        finally:
            service.stop()
    # Three sign-ins, each a code exchanged once with its PKCE verifier.
    assert [r["grant_type"] for r in provider.token_requests] == ["authorization_code"] * 3
    assert all(len(r["code_verifier"]) >= 43 for r in provider.token_requests)
    # The idle tablet, then "Done", ended the grants: the staff member is the actor, not the clock.
    ended = [e["actor"] for e in history if e["type"] == "grant.revoked"]
    emma = keycloak_claims(provider, "emma", [])["sub"]
    assert ended == [{"role": "staff", "id": emma, "store": "s1"}] * 2


ACCESS_TTL_S = 5
"""The provider's access tokens in the refresh scenario: it waits several of them out."""
REFRESH_IDLE_S = 20
"""Longer than a round of the scenario, short enough to wait out once."""


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_the_tablet_renews_its_sign_in_until_revoked_or_idle_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    with Provider(path="/realms/shop") as provider:
        provider.add_key("RSA", "kc-rsa-1")
        provider.login = lambda: keycloak_claims(provider, "emma", ["store-staff"], store_id="s1")
        provider.access_ttl_s = ACCESS_TTL_S
        provider.refresh_tokens = True
        provider.refresh_scope = "offline_access"  # so the tablet must ask for it
        env = service_env(
            redis_server.url,
            tmp_path / "service",
            CARTSYNC_OIDC_ISSUER=provider.issuer,
            CARTSYNC_OIDC_ROLE_CLAIM="realm_access.roles",
            CARTSYNC_OIDC_ROLES="customer=shopper,staff=store-staff",
            CARTSYNC_OIDC_STORE_CLAIM="store_id",
            CARTSYNC_STAFF_SIGNIN_ISSUER=provider.issuer,
            CARTSYNC_STAFF_SIGNIN_OFFLINE_ACCESS="true",
            CARTSYNC_STAFF_IDLE_SECONDS=str(REFRESH_IDLE_S),
            # A token is refused the moment it runs out: a socket not given a fresh one closes.
            CARTSYNC_JWT_LEEWAY_SECONDS="0",
        )
        service = ServiceProcess(env).start()
        provider.clients["cartsync-tablet"] = f"{service.url}/staff"
        try:
            run_scenario(
                "refresh.mjs",
                service,
                tokens.token("customer", customer),
                "(none: the tablet signs in through the provider)",
                CARTSYNC_ACCESS_TTL_SECONDS=str(ACCESS_TTL_S),
                CARTSYNC_STAFF_IDLE_SECONDS=str(REFRESH_IDLE_S),
                CARTSYNC_OIDC_REVOKE_URL=provider.revoke_all_url,
                CARTSYNC_OIDC_OUTAGE_URL=provider.outage_url,
            )
            with httpx.Client(base_url=service.url, timeout=10) as http:
                mine = tokens.headers("customer", customer)
                history = http.get("/v1/cart/history?since=0", headers=mine).json()["events"]
        finally:
            service.stop()
    answered = list(zip(provider.token_requests, provider.token_answers, strict=True))
    grants = [r["grant_type"] for r, _ in answered]
    # Three sign-ins, renewals between them, one tried 4 times through the outage, one refused
    # after the revoke.
    assert grants.count("authorization_code") == 3, grants
    refreshes = [(r, status) for r, status in answered if r["grant_type"] == "refresh_token"]
    assert [s for _, s in refreshes].count(503) == 4, refreshes
    assert [s for _, s in refreshes].count(400) == 1, refreshes
    assert [s for _, s in refreshes].count(200) >= 6, refreshes
    # The outage's 4 attempts came in a row, with one refresh token.
    failed = [i for i, (_, s) in enumerate(refreshes) if s == 503]
    assert failed == list(range(failed[0], failed[0] + 4))
    assert len({refreshes[i][0]["refresh_token"] for i in failed}) == 1
    # A public client: its id and the refresh token, never a secret or a verifier again.
    assert all(set(r) == {"grant_type", "refresh_token", "client_id"} for r, _ in refreshes)
    assert {r["client_id"] for r, _ in refreshes} == {"cartsync-tablet"}
    # Rotation: a refresh token that worked was never presented again.
    used = [r["refresh_token"] for r, s in refreshes if s == 200]
    assert len(set(used)) == len(used)
    assert not set(used) & {r["refresh_token"] for r, s in refreshes if s != 200}
    # The expired sign-in left the grant open; only the idle limit ended it, as the staff member.
    ended = [e["actor"] for e in history if e["type"] == "grant.revoked"]
    emma = keycloak_claims(provider, "emma", [])["sub"]
    assert ended == [{"role": "staff", "id": emma, "store": "s1"}]
    lines = {
        line["sku"] for e in history if e["type"] == "line.added" for line in [e["data"]["line"]]
    }
    assert {"TABLET-1", "TABLET-2", "TABLET-3", "PHONE-3", "WHILE-AWAY"} <= lines


HANDED_TTL_S = 15
"""The first token the app hands over: long enough to start Chromium, short enough to outlive."""


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_the_shop_app_hands_the_shopper_page_its_token_by_post_message_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    with HostApp() as shop, HostApp() as stranger:
        env = service_env(
            redis_server.url,
            tmp_path / "service",
            CARTSYNC_PAGES_HOST_ORIGINS=shop.origin,
            CARTSYNC_JWT_LEEWAY_SECONDS="0",  # the first token is refused the moment it ends
        )
        service = ServiceProcess(env).start()
        shop.pages["/app"] = (
            '<!doctype html><html lang="en"><title>Shop app</title><h1>Shop app</h1>'
            f'<iframe id="cart-frame" title="Your cart" src="{service.url}/demo"'
            ' width="380" height="700"></iframe>'
            f'<iframe id="ad-frame" title="Advert" src="{stranger.origin}/ad"></iframe></html>'
        )
        stranger.pages["/ad"] = '<!doctype html><html lang="en"><title>Advert</title></html>'
        stranger.pages["/app"] = '<!doctype html><html lang="en"><title>Elsewhere</title></html>'
        fresh = tokens.token("customer", customer)
        try:
            with httpx.Client(base_url=service.url, timeout=10) as http:
                # Only the listed origin may frame the page, and only it is told to the page.
                demo = http.get("/demo")
                assert f"frame-ancestors {shop.origin}" in demo.headers["content-security-policy"]
                listed = http.get("/demo/hand-over.json").json()
                assert listed == {"host_origins": [shop.origin]}
                mine = {"Authorization": f"Bearer {fresh}"}
                added = http.post(
                    "/v1/cart/lines", json={"sku": "TSHIRT-1", "qty": 1}, headers=mine
                )
                assert added.status_code == 201, added.text
            run_scenario(
                "hostpage.mjs",
                service,
                tokens.token("customer", customer, ttl_s=HANDED_TTL_S),
                "(none: no tablet here)",
                CARTSYNC_SHOP_URL=shop.origin,
                CARTSYNC_STRANGER_URL=stranger.origin,
                CARTSYNC_FRESH_TOKEN=fresh,
                CARTSYNC_OTHER_TOKEN=tokens.token("customer", f"other-{uuid.uuid4().hex[:8]}"),
                CARTSYNC_THIRD_TOKEN=tokens.token("customer", f"third-{uuid.uuid4().hex[:8]}"),
            )
        finally:
            service.stop()


HANDOFF_TTL_S = 3


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_an_expired_code_disappears_from_the_phone_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    ttl = {"CARTSYNC_HANDOFF_TTL_SECONDS": str(HANDOFF_TTL_S)}
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service", **ttl)).start()
    try:
        run_scenario(
            "code-expiry.mjs",
            service,
            tokens.token("customer", f"shopper-{uuid.uuid4().hex[:8]}"),
            tokens.token("staff", "emma", store="s1"),
            **ttl,
        )
    finally:
        service.stop()


GRANT_TTL_S = 5
"""Long enough for the tablet to open the cart on a loaded machine, short enough to wait out."""


@pytest.mark.timeout(FLOW_TIMEOUT_S + 360)
def test_expired_grant_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    ttl = {"CARTSYNC_GRANT_TTL_SECONDS": str(GRANT_TTL_S)}
    service = ServiceProcess(service_env(redis_server.url, tmp_path / "service", **ttl)).start()
    customer = tokens.token("customer", f"shopper-{uuid.uuid4().hex[:8]}")
    staff = tokens.token("staff", "bob", store="s1")
    started = time.time()
    try:
        output = run_scenario("expiry.mjs", service, customer, staff, **ttl)
        found = re.search(r"^grant (\S+)$", output, re.MULTILINE)
        assert found, f"expiry.mjs named no grant:\n{output}"
        base = f"{service.url}/v1"
        as_customer = {"Authorization": f"Bearer {customer}"}
        as_staff = {"Authorization": f"Bearer {staff}"}
        with httpx.Client(base_url=base, timeout=10) as http:
            # What the tablet would send if it still tried: the service refuses the ended grant.
            grant = f"/grants/{found[1]}"
            late = http.post(f"{grant}/cart/lines", json={"sku": "LATE-9"}, headers=as_staff)
            assert late.status_code == 404, late.text
            assert late.json()["error"]["code"] == "grant_not_found"
            ready = http.put(f"{grant}/cart/collection", json={"ready": True}, headers=as_staff)
            assert ready.status_code == 404, ready.text
            assert http.get(f"{grant}/cart", headers=as_staff).status_code == 404
            cart = http.get("/cart", headers=as_customer).json()
            grants = http.get("/grants", headers=as_customer).json()["grants"]
    finally:
        service.stop()
    assert [line["sku"] for line in cart["lines"]] == ["TSHIRT-1"]
    assert cart["ready_for_collection"] is False
    assert grants == []
    for name in ("tablet-expired.png", "phone-expired.png"):
        shot = (SCREENSHOTS / name).stat()
        assert shot.st_size > 0, name
        assert shot.st_mtime >= started - 1, f"{name} is not from this run"


@pytest.mark.timeout(FLOW_TIMEOUT_S + 120)
def test_click_and_collect_store_and_time_in_chromium(
    browser_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    stores = write_stores(tmp_path / "stores")
    env = service_env(redis_server.url, tmp_path / "service", CARTSYNC_STORES_FILE=str(stores))
    service = ServiceProcess(env).start()
    try:
        run_scenario(
            "collect.mjs",
            service,
            tokens.token("customer", f"shopper-{uuid.uuid4().hex[:8]}"),
            tokens.token("staff", "emma", store="oslo-sentrum"),
        )
    finally:
        service.stop()
    for name in ("phone-collect.png", "phone-collect-ready.png", "tablet-collect.png"):
        assert (SCREENSHOTS / name).stat().st_size > 0, name
