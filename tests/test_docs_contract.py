"""docs/api.md is held to the service: its error codes are ``errors.CODES``, its events the
catalogue's (with their ``data`` fields), and what it says about staff tokens, hand-off claims
and ``X-Device-Id`` holds against a running service. The docs name only files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from cartsync.errors import CODES
from cartsync.web.errors import BAD_REQUEST_CODES
from cartsync.wire_events import EVENT_DATA
from tests.conftest import Tokens
from tests.support.processes import ROOT

PACKAGE = ROOT / "service" / "cartsync"
API_MD = ROOT / "docs" / "api.md"

NEVER_SENT = {
    "error": "CartsyncError's placeholder; every raise names a class or a code",
    "not_found": "NotFound's default; every raise of it names its code",
    "conflict": "Conflict's default; every raise of it (and every Lua refusal) names its code",
}
"""Codes in the source that no caller can receive, each with the reason."""


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the markdown tables in ``text``, header and rule excluded."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[-| :]+\|", line):
            continue
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))])
    return rows[1:] if rows else rows


def codes_in_source() -> set[str]:
    """Every error code literal in the service's Python and Lua."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'\bcode\s*=\s*"([a-z_]+)"', text))
        found |= set(re.findall(r'\b\d{3}: "([a-z_]+)"', text))  # status -> code tables
    for path in PACKAGE.rglob("*.lua"):
        found |= set(re.findall(r"\berr\('([a-z_]+)'", path.read_text()))
    return found


def test_codes_lists_every_code_the_service_names_and_no_other() -> None:
    found = codes_in_source()
    assert set(NEVER_SENT) <= found  # else NEVER_SENT has gone stale
    assert found - set(NEVER_SENT) == CODES
    assert BAD_REQUEST_CODES <= CODES


def test_api_md_lists_exactly_the_error_codes() -> None:
    documented: set[str] = set()
    for row in table_rows(section(API_MD.read_text(), "Errors")):
        status, codes = row[0], row[1]
        assert re.fullmatch(r"[45]\d\d", status), row
        documented |= set(re.findall(r"`([a-z_]+)`", codes))
    assert sorted(documented - CODES) == [], "api.md names codes the service lacks"
    assert sorted(CODES - documented) == [], "api.md lacks codes the service has"


def test_api_md_lists_exactly_the_events_with_their_data_fields() -> None:
    documented: dict[str, set[str]] = {}
    for row in table_rows(section(API_MD.read_text(), "Events")):
        event_type = row[0].strip("`")
        data = re.search(r"`([^`]*)`", row[2])
        assert data is not None, row
        documented[event_type] = set(re.findall(r'[{,]\s*"(\w+)"', data.group(1)))
    assert sorted(set(documented) - set(EVENT_DATA)) == [], "api.md names unknown events"
    assert sorted(set(EVENT_DATA) - set(documented)) == [], "api.md lacks events"
    for event_type, fields in documented.items():
        assert fields == set(EVENT_DATA[event_type].__struct_fields__), event_type


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.name)
def test_docs_name_only_files_in_the_repository(doc: Path) -> None:
    text = doc.read_text()
    top = "|".join(re.escape(p.name) for p in ROOT.iterdir() if not p.name.startswith("."))
    named = set(re.findall(rf"`((?:{top}|\.ci)/[^`\s]*)`", text))
    named |= set(re.findall(r"\]\(([^)#:\s]+)(?:#[^)\s]*)?\)", text))
    for name in sorted(named):
        if any(mark in name for mark in "<{*…"):
            continue  # a pattern, not a file
        assert (doc.parent / name).exists() or (ROOT / name).exists(), f"{doc.name}: {name}"
    for outside in ("FIELD-NOTES", "STYLE.md", "/work/"):
        assert outside not in text, f"{doc.name} cites {outside}, which is not in the repository"


async def test_what_api_md_says_about_staff_and_device_ids_holds(
    client: httpx.AsyncClient, tokens: Tokens, customer_id: str
) -> None:
    me = tokens.headers("customer", customer_id)
    staff = tokens.headers("staff", "emp-doc", store="store-doc")
    r = await client.get("/v1/cart", headers={**me, "X-Device-Id": "not a device id"})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "bad_header",
        "message": "X-Device-Id must match [A-Za-z0-9._:-]{1,64}",
        "field": "X-Device-Id",
    }
    assert (await client.get("/v1/cart", headers=staff)).status_code == 403
    code = (await client.post("/v1/handoffs", headers=me)).json()["code"]
    claimed = await client.post(f"/v1/handoffs/{code}/claim", headers=staff)
    assert claimed.status_code == 201
    assert set(claimed.json()) == {"grant"}
    grant = claimed.json()["grant"]
    assert set(grant) == {"id", "owner", "staff", "store", "created_at", "expires_at"}
    r = await client.get(f"/v1/grants/{grant['id']}/cart", headers=staff)
    assert r.status_code == 200
    assert r.json()["owner"] == f"c:{customer_id}"
    text = API_MD.read_text()
    assert "no route serves staff tokens yet" not in text
    assert '{"grant": {' in text
