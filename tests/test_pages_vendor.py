"""The pages' third-party browser code is the locked npm package's own file, served by the service.

service/cartsync/pages/static/vendor/ is checked in (``npm ci && npm run vendor`` in
service/cartsync/pages writes it), so the wheel and the image need no npm and no CDN; this test
installs the lock and checks the copy has not drifted from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.browser import node
from tests.support.processes import ROOT, ServiceProcess

PAGES = ROOT / "service" / "cartsync" / "pages"
VENDORED = {
    "static/vendor/jsQR.js": "node_modules/jsqr/dist/jsQR.js",
    "static/vendor/jsQR.LICENSE.txt": "node_modules/jsqr/LICENSE",
}


@pytest.fixture(scope="module")
def pages_packages() -> Path:
    node.npm_ci(PAGES)
    return PAGES


def test_the_vendored_files_are_the_locked_packages_files(pages_packages: Path) -> None:
    lock = json.loads((pages_packages / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/jsqr"]["version"] == "1.4.0"
    for copy, source in VENDORED.items():
        assert (pages_packages / copy).read_bytes() == (pages_packages / source).read_bytes(), copy


async def test_the_service_serves_the_decoder_itself(client: httpx.AsyncClient) -> None:
    answer = await client.get("/static/vendor/jsQR.js")
    assert answer.status_code == 200
    assert "javascript" in answer.headers["content-type"]
    assert answer.content == (PAGES / "static/vendor/jsQR.js").read_bytes()


def test_the_pages_load_nothing_from_elsewhere(service: ServiceProcess) -> None:
    for page in ("/staff", "/demo"):
        answer = httpx.get(service.url + page, timeout=10)
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        assert "http" not in answer.text.replace(service.url, ""), page
