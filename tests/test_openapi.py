"""The OpenAPI document against the app it describes: every route, status, link and example, and
header patterns that say exactly what the edge accepts."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Route

from cartsync import pages
from cartsync.domain.principal import device_id
from cartsync.errors import InvalidInput
from cartsync.settings import Settings
from cartsync.web import inputs, openapi
from cartsync.web.app import ENDPOINTS, PUBLIC, create_app
from cartsync.web.routes_cart import unchanged_at
from tests.support.processes import TEST_SECRET

SPEC = openapi.build(ENDPOINTS, PUBLIC)
OPERATIONS = {
    op["operationId"]: (path, method, op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
}


def served_routes() -> set[tuple[str, str]]:
    settings = Settings.from_env(
        {"CARTSYNC_JWT_SECRETS": TEST_SECRET, "CARTSYNC_DATA_DIR": "/nonexistent"}
    )
    app = create_app(settings)  # routes only: the lifespan (Redis) never runs
    # The pages (tablet, phone, support, their service worker and sign-in settings) are for
    # people, not API clients: the API document leaves them out.
    page_paths = {getattr(r, "path", "") for r in pages.routes(settings)}
    out = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path not in page_paths:
            out |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return out


def test_every_served_route_is_described_and_nothing_else() -> None:
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert described == served_routes()
    assert len(OPERATIONS) == len(described)  # operation ids are unique


def test_responses_name_every_status_the_service_answers() -> None:
    def statuses(operation_id: str) -> set[str]:
        return set(OPERATIONS[operation_id][2]["responses"])

    assert {"200", "201"} <= statuses("addLine")
    assert {"200", "201"} <= statuses("addItemForGrant")
    assert {"200", "304", "400"} <= statuses("getCart")
    assert {"200", "503"} <= statuses("readyz")
    assert {"201", "403", "429"} <= statuses("issueGuest")
    assert {"201", "404", "429"} <= statuses("claimHandoff")
    assert "metrics" not in OPERATIONS  # served on the private metrics port only
    for operation_id, (_, _, op) in OPERATIONS.items():
        for status, answer in op["responses"].items():
            headers = answer.get("headers", {})
            if status == "401":
                assert headers["WWW-Authenticate"]["required"], operation_id
            if status in ("429",) or (status == "503" and operation_id != "readyz"):
                assert headers["Retry-After"]["required"], operation_id
            if status == "412":
                assert headers["ETag"]["required"], operation_id


def test_history_declares_its_query_parameters() -> None:
    for operation_id in ("history", "historyForCustomer", "historyForGrant"):
        params = {p["name"]: p for p in OPERATIONS[operation_id][2]["parameters"]}
        assert {"since", "limit", "epoch"} <= set(params)
        assert params["since"]["schema"]["type"] == "integer"
        assert params["limit"]["schema"]["minimum"] == 0


def test_an_empty_patch_is_refused_by_the_schema_too() -> None:
    assert SPEC["components"]["schemas"]["PatchLine"]["minProperties"] == 1


def test_links_name_real_operations_and_all_their_path_parameters() -> None:
    count = 0
    for path, _, op in OPERATIONS.values():
        for answer in op["responses"].values():
            for link in answer.get("links", {}).values():
                target_path, _, _ = OPERATIONS[link["operationId"]]
                assert set(link["parameters"]) == set(re.findall(r"{(\w+)}", target_path)), path
                count += 1
    assert count >= 3 * 8  # add line, create wishlist, add item, under three prefixes


@pytest.mark.parametrize(
    "operation_id",
    sorted(k for k, (_, _, op) in OPERATIONS.items() if "requestBody" in op),
)
def test_every_request_example_decodes_as_its_body_type(operation_id: str) -> None:
    ep = next(e for e in ENDPOINTS if OPERATIONS[operation_id][2]["summary"] == e.summary)
    content = OPERATIONS[operation_id][2]["requestBody"]["content"]["application/json"]
    assert ep.body is not None
    inputs.decode_body(msgspec.json.encode(content["example"]), "application/json", ep.body)


def _accepts(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except InvalidInput:
        return False
    return True


PARSERS = {
    "If-Match": inputs.parse_if_match,
    "If-None-Match": unchanged_at,
    "Idempotency-Key": inputs.parse_idempotency_key,
    "X-Device-Id": device_id,
}


@pytest.mark.parametrize("header", sorted(PARSERS))
@given(data=st.data())
def test_header_patterns_say_what_the_edge_accepts(header: str, data: st.DataObject) -> None:
    pattern = openapi.HEADERS[header]["schema"]["pattern"]
    valid = data.draw(st.from_regex(pattern, fullmatch=True).filter(str.isascii))
    assert _accepts(PARSERS[header], valid), valid
    other = data.draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))
    stripped = other.strip()  # HTTP servers strip a header's surrounding whitespace
    assert _accepts(PARSERS[header], stripped) == bool(re.fullmatch(pattern, stripped)), stripped


def test_every_operation_shows_an_example() -> None:
    def has_example(value: object) -> bool:
        if isinstance(value, dict):
            return "example" in value or any(has_example(v) for v in value.values())
        if isinstance(value, list):
            return any(has_example(v) for v in value)
        return False

    documents = {"openapi", "asyncapi"}  # they describe themselves
    lacking = [
        k for k, (_, _, op) in OPERATIONS.items() if k not in documents and not has_example(op)
    ]
    assert lacking == []
    for operation_id, (_, _, op) in OPERATIONS.items():
        if "requestBody" in op:
            assert "example" in op["requestBody"]["content"]["application/json"], operation_id
