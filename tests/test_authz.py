"""Who may reach whose data: every route, every kind of token."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from cartsync import wire
from cartsync.web.app import ENDPOINTS
from cartsync.web.endpoints import Endpoint
from tests.conftest import Tokens
from tests.support.processes import TEST_SECRET, ServiceProcess

PREFIXES = ("/v1", "/v1/customers/{customer_id}")
ID_PARAMS = {"line_id", "wishlist_id", "item_id", "grant_id"}
SECRET_MARK = uuid.uuid4().hex[:10]
"""Put into A's skus, names and note: it must never show up in an answer to anyone else."""


def params_of(ep: Endpoint) -> set[str]:
    return set(re.findall(r"{(\w+)}", ep.path))


def route_id(ep: Endpoint) -> str:
    return f"{ep.method} {ep.path}"


@dataclass(frozen=True)
class Victim:
    """Customer A, with a line, a wishlist with an item, and an item on 'default'."""

    customer_id: str
    token: str
    line_id: str
    wishlist_id: str
    item_id: str
    default_item_id: str
    grant_id: str

    def param_sets(self, ep: Endpoint) -> list[dict[str, str]]:
        """A's real ids for the route's path parameters (two sets for item routes)."""
        own = {
            "line_id": self.line_id,
            "wishlist_id": self.wishlist_id,
            "item_id": self.item_id,
            "grant_id": self.grant_id,
        }
        sets = [own]
        if "item_id" in params_of(ep):
            sets.append({**own, "wishlist_id": "default", "item_id": self.default_item_id})
        return sets


async def a_snapshot(c: httpx.AsyncClient) -> dict[str, bytes]:
    """A's data as sent, byte for byte (the export minus its own timestamp)."""
    out = {}
    for path in ("/v1/cart", "/v1/wishlists", "/v1/cart/history?since=0"):
        r = await c.get(path)
        assert r.status_code == 200, r.text
        out[path] = r.content
    export = await c.get("/v1/me/export")
    assert export.status_code == 200
    out["export"] = re.sub(rb'"exported_at":"[^"]*"', b"", export.content)
    return out


@pytest.fixture
async def victim(alice: httpx.AsyncClient, customer_id: str, tokens: Tokens) -> Victim:
    line = await alice.post("/v1/cart/lines", json={"sku": f"A-{SECRET_MARK}", "qty": 3})
    note = await alice.put("/v1/cart/note", json={"note": f"note {SECRET_MARK}"})
    wl = await alice.post("/v1/wishlists", json={"name": f"list {SECRET_MARK}"})
    wl_id = wl.json()["wishlist"]["id"]
    item = await alice.post(f"/v1/wishlists/{wl_id}/items", json={"sku": f"W-{SECRET_MARK}"})
    default = await alice.post("/v1/wishlists/default/items", json={"sku": f"D-{SECRET_MARK}"})
    code = (await alice.post("/v1/handoffs")).json()["code"]
    grant = await alice.post(
        f"/v1/handoffs/{code}/claim", headers=tokens.headers("staff", "emp-a", store="s1")
    )
    statuses = [r.status_code for r in (line, note, wl, item, default, grant)]
    assert statuses == [201, 200, 201, 201, 201, 201]
    token = alice.headers["authorization"].removeprefix("Bearer ")
    return Victim(
        customer_id,
        token,
        line.json()["line"]["id"],
        wl_id,
        item.json()["item"]["id"],
        default.json()["item"]["id"],
        grant.json()["grant"]["id"],
    )


def valid_body(body_type: type[Any] | None, victim: Victim) -> dict[str, Any] | None:
    """A body each route accepts; the merge is offered A's own token as the 'guest' token."""
    if body_type is None:
        return None
    bodies: dict[type[Any], dict[str, Any]] = {
        wire.AddLine: {"sku": "B-SKU", "qty": 1},
        wire.PatchLine: {"qty": 7},
        wire.SetNote: {"note": "mine now"},
        wire.MergeCarts: {"guest_token": victim.token},
        wire.CreateWishlist: {"name": "B list"},
        wire.PatchWishlist: {"name": "stolen"},
        wire.AddWishItem: {"sku": "B-SKU"},
        wire.MoveToCart: {"qty": 1},
        wire.SetCollection: {"ready": True},
        wire.RestoreCart: {"rev": 1, "reason": "authz"},
    }
    assert body_type in bodies, f"add an example body for {body_type.__name__}"
    return bodies[body_type]


async def send(
    c: httpx.AsyncClient,
    ep: Endpoint,
    prefix: str,
    params: dict[str, str],
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    path = (prefix + ep.path).format(**params)
    kw: dict[str, Any] = {"headers": headers or {}}
    if body is not None:
        kw["json"] = body
    return await c.request(ep.method, path, **kw)


@pytest.fixture
async def anon(service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client that opens a connection per request.

    Refusals sent before the request body is read (401, 403) make Hypercorn drop the connection
    without a ``Connection: close``; tests/test_bad_input.py checks that on its own. Here a
    fresh connection per request keeps that from masking what these tests check.
    """
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=service.url, timeout=10, limits=limits) as c:
        yield c


# Customer B against customer A ----------------------------------------------------------------


@pytest.mark.parametrize("ep", ENDPOINTS, ids=route_id)
async def test_customer_b_cannot_reach_a_through_any_route(
    ep: Endpoint, victim: Victim, alice: httpx.AsyncClient, anon: httpx.AsyncClient, tokens: Tokens
) -> None:
    before = await a_snapshot(alice)
    a_rev = (await alice.get("/v1/cart")).json()["rev"]
    body = valid_body(ep.body, victim)
    uses_a_ids = bool(params_of(ep) & ID_PARAMS)

    for params in victim.param_sets(ep):
        for if_match in (None, '"999"', f'"{a_rev}"'):
            # A fresh B each time: B's own data is empty, so anything of A's would stand out.
            b_id = f"b-{uuid.uuid4().hex[:12]}"
            headers = tokens.headers("customer", b_id)
            if if_match is not None:
                headers["If-Match"] = if_match
            what = f"{ep.method} {ep.path} {params} If-Match={if_match}"

            mirrored = await send(
                anon, ep, PREFIXES[1], {**params, "customer_id": victim.customer_id}, body, headers
            )
            assert mirrored.status_code == 403, (what, mirrored.text)
            assert mirrored.json()["error"]["code"] == "forbidden"

            own = await send(anon, ep, PREFIXES[0], params, body, headers)
            assert SECRET_MARK not in own.text, (what, own.text)
            assert victim.customer_id not in own.text, (what, own.text)
            assert own.status_code < 500, (what, own.text)
            if uses_a_ids:
                assert own.status_code == 404, (what, own.text)
                assert own.json()["error"]["code"].endswith("_not_found")
            elif own.status_code == 412:
                assert own.headers["etag"] == '"0"', (what, "412 must carry B's revision")
            if ep.method == "GET" and not uses_a_ids:
                assert own.status_code == 200, (what, own.text)
                assert own.json().get("rev", 0) == 0
                if "owner" in own.json():
                    assert own.json()["owner"] == f"c:{b_id}"
            if ep.body is wire.MergeCarts:
                assert own.status_code == 422, own.text
                assert own.json()["error"]["code"] == "invalid_guest_token"

    assert await a_snapshot(alice) == before


# Bad credentials -------------------------------------------------------------------------------


def forged(secret: str | None = None, **claims: Any) -> str:
    """A token like the real ones, with some claims changed (or signed with another secret)."""
    kid, _, real_secret = TEST_SECRET.partition(":")
    now = int(time.time())
    payload = {
        "sub": "someone",
        "role": "customer",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "aud": "cartsync",
        "iss": "cartsync",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret or real_secret, algorithm="HS256", headers={"kid": kid})


BAD_CREDENTIALS = {
    "no-token": None,
    "garbage": "Bearer not-a-jwt",
    "empty-bearer": "Bearer",
    "basic-scheme": "Basic dXNlcjpwYXNz",
    "expired": "Bearer " + forged(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    "wrong-audience": "Bearer " + forged(aud="another-api"),
    "wrong-issuer": "Bearer " + forged(iss="someone-else"),
    "wrong-secret": "Bearer " + forged(secret="a-different-secret-of-enough-length-000"),
    "no-expiry": "Bearer " + forged(exp=None),
    "unknown-role": "Bearer " + forged(role="admin"),
    "alg-none": "Bearer "
    + jwt.encode(
        {
            "sub": "someone",
            "role": "customer",
            "aud": "cartsync",
            "iss": "cartsync",
            "exp": int(time.time()) + 600,
        },
        None,
        algorithm="none",
    ),
}


@pytest.mark.parametrize("credential", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
async def test_bad_credentials_are_401_on_every_route(
    credential: str | None, victim: Victim, alice: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    before = await a_snapshot(alice)
    headers = {} if credential is None else {"Authorization": credential}
    for ep in ENDPOINTS:
        body = valid_body(ep.body, victim)
        params = {**victim.param_sets(ep)[0], "customer_id": victim.customer_id}
        for prefix in PREFIXES:
            r = await send(anon, ep, prefix, params, body, headers)
            what = f"{ep.method} {prefix}{ep.path}"
            assert r.status_code == 401, (what, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer"), what
            assert r.json()["error"]["code"] == "unauthenticated"
            assert SECRET_MARK not in r.text
    assert await a_snapshot(alice) == before


# Roles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "store"),
    [("service", None), ("staff", "store-1"), ("support", None)],
    ids=["service", "staff", "support"],
)
async def test_tokens_without_own_data_are_403_on_own_routes(
    role: str, store: str | None, victim: Victim, anon: httpx.AsyncClient, tokens: Tokens
) -> None:
    headers = tokens.headers(role, f"{role}-1", **({"store": store} if store else {}))
    for ep in ENDPOINTS:
        r = await send(
            anon, ep, "/v1", victim.param_sets(ep)[0], valid_body(ep.body, victim), headers
        )
        assert r.status_code == 403, (route_id(ep), r.text)
        assert r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("role", "subject", "store"),
    [
        ("customer", None, None),
        ("customer", "other", None),
        ("guest", "g_1", None),
        ("staff", "staff-1", "store-1"),
    ],
    ids=["customer-self", "customer-other", "guest", "staff"],
)
async def test_only_service_tokens_may_use_customer_routes(
    role: str,
    subject: str | None,
    store: str | None,
    victim: Victim,
    alice: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    tokens: Tokens,
) -> None:
    before = await a_snapshot(alice)
    headers = tokens.headers(
        role, subject or victim.customer_id, **({"store": store} if store else {})
    )
    for ep in ENDPOINTS:
        params = {**victim.param_sets(ep)[0], "customer_id": victim.customer_id}
        r = await send(anon, ep, PREFIXES[1], params, valid_body(ep.body, victim), headers)
        assert r.status_code == 403, (route_id(ep), r.text)
        assert r.json()["error"]["code"] == "forbidden"
        assert SECRET_MARK not in r.text
    assert await a_snapshot(alice) == before


async def test_service_token_reads_and_writes_the_named_customer(
    victim: Victim, alice: httpx.AsyncClient, anon: httpx.AsyncClient, tokens: Tokens
) -> None:
    headers = tokens.headers("service", "checkout-svc")
    base = f"/v1/customers/{victim.customer_id}"
    own_view = await alice.get("/v1/cart")
    service_view = await anon.get(f"{base}/cart", headers=headers)
    assert service_view.status_code == 200
    assert service_view.content == own_view.content
    assert service_view.headers["etag"] == own_view.headers["etag"]

    r = await anon.post(f"{base}/cart/lines", json={"sku": "FROM-SVC", "qty": 2}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["line"]["updated_by"] == {"role": "service", "id": "checkout-svc"}

    cart = (await alice.get("/v1/cart")).json()
    assert [x["sku"] for x in cart["lines"]] == [f"A-{SECRET_MARK}", "FROM-SVC"]
    last = (await alice.get("/v1/cart/history", params={"since": cart["rev"] - 1})).json()
    [event] = last["events"]
    assert event["type"] == "line.added"
    assert event["actor"] == {"role": "service", "id": "checkout-svc"}

    wishlists = await anon.get(f"{base}/wishlists", headers=headers)
    assert wishlists.content == (await alice.get("/v1/wishlists")).content


async def test_support_reads_every_route_with_a_reason_and_changes_nothing_but_restores(
    victim: Victim, alice: httpx.AsyncClient, anon: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Support on every /v1/customers route: reads need a reason (422 without, nothing
    recorded), then answer what the customer sees; every change but a restore is 403."""
    before = await a_snapshot(alice)
    support = tokens.headers("support", "agent-7")
    why = {"X-Support-Reason": "authz matrix"}
    reads = 0
    for ep in ENDPOINTS:
        params = {**victim.param_sets(ep)[0], "customer_id": victim.customer_id}
        body = valid_body(ep.body, victim)
        if ep.method == "GET":
            r = await send(anon, ep, PREFIXES[1], params, body, support)
            assert r.status_code == 422, (route_id(ep), r.text)
            assert r.json()["error"]["code"] == "reason_required"
            r = await send(anon, ep, PREFIXES[1], params, body, {**support, **why})
            assert r.status_code == 200, (route_id(ep), r.text)
            reads += 1
        elif ep.operation != "restore_cart":
            r = await send(anon, ep, PREFIXES[1], params, body, {**support, **why})
            assert r.status_code == 403, (route_id(ep), r.text)
            assert r.json()["error"]["code"] == "forbidden"
    code = (await alice.post("/v1/handoffs")).json()["code"]
    claim = await anon.post(f"/v1/handoffs/{code}/claim", headers=support)
    assert claim.status_code == 403
    after = await a_snapshot(alice)
    listed = after.pop("export")
    before.pop("export")
    assert after == before
    assert listed.count(b'"agent":"agent-7"') == reads


async def test_service_token_on_an_unknown_customer_sees_an_empty_cart(
    anon: httpx.AsyncClient, tokens: Tokens
) -> None:
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    r = await anon.get(f"/v1/customers/{nobody}/cart", headers=tokens.headers("service", "svc"))
    assert r.status_code == 200
    assert r.json()["owner"] == f"c:{nobody}"
    assert r.json()["lines"] == []
