"""The pages' room: routes and files apart from the API adapter, JS modules that fit together."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
import pytest

from cartsync.settings import Settings, SettingsError
from tests.support.processes import ROOT, TEST_SECRET, ServiceProcess

PACKAGE = ROOT / "service" / "cartsync"
PAGES = PACKAGE / "pages"
STATIC = PAGES / "static"
IMPORT = re.compile(r'^import \{([^}]*)\} from "/static/([\w.-]+)";$', re.MULTILINE)
EXPORT = re.compile(r"^export (?:async )?(?:function|const|class) ([\w$]+)", re.MULTILINE)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_pages_use_the_api_only_over_http() -> None:
    """Page code can be read without the API's: of cartsync it imports itself and the settings."""
    for module in PAGES.glob("*.py"):
        ours = {n for n in _imports(module) if n.startswith("cartsync")}
        foreign = {n for n in ours if not n.startswith("cartsync.pages")} - {"cartsync.settings"}
        assert not foreign, f"{module.name} imports {sorted(foreign)}"


def test_only_the_app_wires_the_pages_in() -> None:
    for module in (PACKAGE / "web").glob("*.py"):
        if module.name == "app.py":
            continue
        assert not any(n.startswith("cartsync.pages") for n in _imports(module)), module.name


def test_no_page_files_left_in_the_api_adapter() -> None:
    assert not (PACKAGE / "web" / "static").exists()
    assert not (PACKAGE / "web" / "pages.py").exists()


def test_every_imported_name_is_exported_by_its_module() -> None:
    """The browser would refuse the whole page for one missing export; say which, here."""
    exports = {p.name: set(EXPORT.findall(p.read_text())) for p in STATIC.glob("*.js")}
    for module in STATIC.glob("*.js"):
        for names, source in IMPORT.findall(module.read_text()):
            assert source in exports, f"{module.name} imports the missing /static/{source}"
            wanted = {n.strip().split(" as ")[0] for n in names.split(",") if n.strip()}
            missing = wanted - exports[source]
            assert not missing, f"{module.name} imports {sorted(missing)} that {source} lacks"


def test_the_page_modules_are_named_for_what_they_hold() -> None:
    """No grab-bag module (the old ui.js held DOM, money, tokens and errors at once)."""
    names = {p.stem for p in STATIC.glob("*.js")}
    assert not names & {"ui", "utils", "helpers", "common", "misc"}, names


def _import_closure(entry: str) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(source for _, source in IMPORT.findall((STATIC / name).read_text()))
    return seen


def test_the_offline_shell_caches_everything_the_shopper_page_loads() -> None:
    """A module missing from sw.js's list would break the page on an offline reload only."""
    listed = set(re.findall(r'"(/[^"]*)"', (STATIC / "sw.js").read_text()))
    wanted = {"/demo", "/static/style.css"} | {f"/static/{m}" for m in _import_closure("demo.js")}
    assert listed == wanted


def test_the_staff_sign_in_issuer_must_be_a_configured_one() -> None:
    env = {"CARTSYNC_JWT_SECRETS": TEST_SECRET}
    with pytest.raises(SettingsError, match="CARTSYNC_STAFF_SIGNIN_ISSUER"):
        Settings.from_env({**env, "CARTSYNC_STAFF_SIGNIN_ISSUER": "https://sso.example/realms/x"})
    with pytest.raises(SettingsError, match="CARTSYNC_STAFF_IDLE_SECONDS"):
        Settings.from_env({**env, "CARTSYNC_STAFF_IDLE_SECONDS": "0"})


def test_without_a_provider_the_tablet_offers_the_development_box(service: ServiceProcess) -> None:
    answer = httpx.get(service.url + "/staff/sign-in.json", timeout=10)
    assert answer.json() == {"provider": None, "idle_seconds": 600}
    staff = httpx.get(service.url + "/staff", timeout=10)
    assert "connect-src 'self' ws: wss:;" in staff.headers["content-security-policy"]


def test_without_host_origins_the_shopper_page_takes_no_post_message(
    service: ServiceProcess,
) -> None:
    assert httpx.get(service.url + "/demo/hand-over.json").json() == {"host_origins": []}
    csp = httpx.get(service.url + "/demo").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
