"""The layering the code relies on: a pure domain, adapters around it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "service" / "cartsync"
FORBIDDEN_IN_DOMAIN = (
    "redis",
    "starlette",
    "hypercorn",
    "jwt",
    "limits",
    "httpx",
    "cartsync.storage",
    "cartsync.web",
    "cartsync.auth",
    "cartsync.settings",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted((PACKAGE / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_knows_nothing_of_redis_http_or_tokens(module: Path) -> None:
    bad = {
        name
        for name in _imports(module)
        for prefix in FORBIDDEN_IN_DOMAIN
        if name == prefix or name.startswith(prefix + ".")
    }
    assert not bad, f"{module.name} imports {sorted(bad)}"


def test_storage_and_auth_do_not_reach_into_web() -> None:
    for folder in ("storage", "auth"):
        for module in (PACKAGE / folder).glob("*.py"):
            assert not any(n.startswith("cartsync.web") for n in _imports(module)), module


def test_scripts_declare_keys_not_patterns() -> None:
    """Cluster-safe Lua: no KEYS/SCAN pattern walks, every key arrives in KEYS."""
    for script in (PACKAGE / "storage" / "lua").glob("*.lua"):
        text = script.read_text()
        for banned in ("'KEYS'", "'SCAN'", '"KEYS"', '"SCAN"'):
            assert banned not in text, f"{script.name} calls {banned}"
