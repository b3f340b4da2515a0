"""The package's promises: a pinned public surface, only three dependencies, typed and clean."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cartsync_client

CLIENT = Path(__file__).resolve().parents[1]
SOURCES = sorted((CLIENT / "src" / "cartsync_client").glob("*.py"))

PUBLIC = {
    "EVENT_TYPES",
    "PROTOCOL",
    "Ack",
    "Actor",
    "Backoff",
    "Cart",
    "CartMirror",
    "CartsyncClient",
    "CartsyncError",
    "Checkout",
    "CheckoutResult",
    "Collection",
    "CollectionResult",
    "Conflict",
    "Erased",
    "Event",
    "Export",
    "Forbidden",
    "Grant",
    "GrantResult",
    "Grants",
    "GuestToken",
    "Handoff",
    "History",
    "InvalidRequest",
    "Line",
    "LineResult",
    "MergeResult",
    "MergeStrategy",
    "MirrorError",
    "NotFound",
    "NoteResult",
    "PatchLineResult",
    "PreconditionFailed",
    "RateLimited",
    "Removed",
    "RevOnly",
    "SavedForLater",
    "SessionClosed",
    "Snapshot",
    "Subscription",
    "TokenProvider",
    "Unauthorized",
    "Unavailable",
    "Update",
    "WishItem",
    "WishItemResult",
    "Wishlist",
    "WishlistResult",
    "Wishlists",
    "__version__",
    "guest_token",
}


def test_public_surface_is_pinned() -> None:
    assert set(cartsync_client.__all__) == PUBLIC
    for name in cartsync_client.__all__:
        assert hasattr(cartsync_client, name), name


def test_error_classes_form_one_tree() -> None:
    base = cartsync_client.CartsyncError
    for name in ("InvalidRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict"):
        assert issubclass(getattr(cartsync_client, name), base)
    for name in ("PreconditionFailed", "RateLimited", "Unavailable", "SessionClosed"):
        assert issubclass(getattr(cartsync_client, name), base)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_imports_nothing_from_the_service(source: Path) -> None:
    tree = ast.parse(source.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    allowed = {"cartsync_client", "httpx", "websockets", "msgspec", "__future__"}
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party <= allowed, third_party - allowed


def test_declares_exactly_three_dependencies() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0] for dep in project["dependencies"]}
    assert names == {"httpx", "websockets", "msgspec"}
    assert (CLIENT / "src" / "cartsync_client" / "py.typed").exists()


def test_importing_the_client_does_not_load_the_service() -> None:
    check = "import cartsync_client, sys; assert 'cartsync' not in sys.modules, 'service loaded'"
    done = subprocess.run(
        [sys.executable, "-c", check],
        env={"PYTHONPATH": str(CLIENT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path)],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(ruff), *args, "--no-cache", "src", "examples", "tests"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
