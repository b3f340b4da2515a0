"""Release hygiene a publisher checks: one licence, metadata the package index takes, a lock that
covers what the service imports, a changelog, and versions that agree with the protocol."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from trove_classifiers import classifiers as known_classifiers

from tests.support.processes import ROOT

LICENCE = "Apache-2.0"
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
"""The standard text of https://www.apache.org/licenses/LICENSE-2.0.txt, unchanged."""
LICENSE_FILES = [ROOT / "LICENSE", ROOT / "clients/python/LICENSE", ROOT / "clients/js/LICENSE"]
PACKAGES = {"cartsync": ROOT, "cartsync-client": ROOT / "clients/python"}
"""Each Python package's folder, the one holding its pyproject.toml."""
JS_PACKAGE = ROOT / "clients/js/package.json"
LOCK = ROOT / "requirements.lock"
CHANGELOG = ROOT / "CHANGELOG.md"
CHANGE_KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def pyproject(name: str) -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads((PACKAGES[name] / "pyproject.toml").read_text())
    return document


def module_version(path: Path) -> str:
    found = re.search(r'^__version__ = "([^"]+)"$', path.read_text(), re.MULTILINE)
    assert found, f"{path}: no __version__"
    return found.group(1)


def released_version(name: str) -> str:
    """The version a build of the package gets: static, or read from the module it names."""
    document = pyproject(name)
    if "version" in document["project"]:
        return str(document["project"]["version"])
    assert document["project"]["dynamic"] == ["version"]
    attr = document["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, _, _ = attr.rpartition(".")
    (where,) = document["tool"]["setuptools"]["packages"]["find"]["where"]
    return module_version(PACKAGES[name] / where / module.replace(".", "/") / "__init__.py")


# --- licence -------------------------------------------------------------------------------------


def test_one_apache_licence_everywhere() -> None:
    for path in LICENSE_FILES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == APACHE_2_SHA256, (
            f"{path.relative_to(ROOT)} is not the standard Apache License 2.0 text"
        )
    for name in PACKAGES:
        project = pyproject(name)["project"]
        assert project["license"] == LICENCE, name
        assert project["license-files"] == ["LICENSE"], name
        assert (PACKAGES[name] / "LICENSE").is_file()
        stale = [c for c in project.get("classifiers", []) if c.startswith("License ::")]
        assert not stale, f"{name}: licence classifiers clash with the SPDX expression: {stale}"
    package = json.loads(JS_PACKAGE.read_text())
    assert package["license"] == LICENCE
    lock = json.loads((JS_PACKAGE.parent / "package-lock.json").read_text())
    assert lock["packages"][""]["license"] == LICENCE


# --- package metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_metadata_is_fit_to_publish(name: str) -> None:
    project = pyproject(name)["project"]
    assert project["name"] == name
    assert project["description"]
    assert project["authors"]
    assert all(author.get("name") for author in project["authors"])
    assert len(project["keywords"]) >= 3
    unknown = [c for c in project["classifiers"] if c not in known_classifiers]
    assert not unknown, f"{name}: the package index refuses unknown classifiers: {unknown}"
    readme = PACKAGES[name] / project["readme"]
    assert readme.suffix == ".md"
    assert readme.read_text().startswith("# ")

    supported = SpecifierSet(project["requires-python"])
    pythons = [
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert pythons, f"{name}: no Python version classifier"
    assert all(f"{v}.0" in supported for v in pythons), (pythons, supported)
    assert "Typing :: Typed" in project["classifiers"]

    for label, url in project.get("urls", {}).items():
        assert url.startswith("https://"), f"{name}: {label} = {url!r} is no URL the index takes"


def test_package_versions_come_from_one_place() -> None:
    service = pyproject("cartsync")
    assert service["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "cartsync.__version__"
    client = released_version("cartsync-client")
    init = ROOT / "clients/python/src/cartsync_client/__init__.py"
    assert client == module_version(init), "the client's pyproject and __version__ disagree"


def test_client_versions_follow_the_protocol_version() -> None:
    declared = {
        found[1]
        for path in (ROOT / "service/cartsync").rglob("*.py")
        for found in re.finditer(r'^SUBPROTOCOL = "cartsync\.v(\d+)"$', path.read_text(), re.M)
    }
    assert len(declared) == 1, f"the service should declare one SUBPROTOCOL, found {declared}"
    protocol = int(declared.pop())
    python_client = Version(released_version("cartsync-client"))
    js_client = Version(json.loads(JS_PACKAGE.read_text())["version"])
    assert python_client == js_client, "the Python and JS clients carry different versions"
    assert python_client.major == protocol, (
        f"client {python_client} speaks cartsync.v{protocol}: its major version must be "
        f"{protocol} (docs/compatibility.md)"
    )


_RELATIVE_LINK = re.compile(r"!?\[[^\]]*\]\((?!https://|#)([^)\s]+)\)")
"""A link or image to a file of the repository: on the package index it leads nowhere."""


def test_python_client_readme_reads_well_on_the_package_index() -> None:
    readme = (ROOT / "clients/python/README.md").read_text()
    relative = _RELATIVE_LINK.findall(readme)
    assert not relative, f"links the package index cannot follow: {relative}"
    assert "pip install cartsync-client" in readme
    assert "cartsync.v1" in readme, "say which service protocol the client speaks"
    assert LICENCE in readme


# --- the lock file the image installs ------------------------------------------------------------


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes) from requirements.lock."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current: list[str] | None = None
    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pinned = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)\s*\\?", line)
        if pinned:
            current = []
            pins[canonicalize_name(pinned[1])] = (Version(pinned[2]), current)
            continue
        hashed = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})\s*\\?", line)
        assert hashed, f"requirements.lock: unexpected line {line!r}"
        assert current is not None, f"requirements.lock: a hash before any pin: {line!r}"
        current.append(hashed[1])
    return pins


def runtime_requirements() -> list[Requirement]:
    """The service's dependencies with the ``otel`` extra (the image traces when ``OTEL_*`` says
    so), and the requirements their chosen extras add."""
    project = pyproject("cartsync")["project"]
    direct = [Requirement(r) for r in project["dependencies"]]
    direct += [Requirement(r) for r in project["optional-dependencies"]["otel"]]
    found = list(direct)
    for requirement in direct:
        for extra in requirement.extras:
            for raw in importlib.metadata.requires(requirement.name) or []:
                added = Requirement(raw)
                if added.marker is not None and added.marker.evaluate({"extra": extra}):
                    added.marker = None
                    found.append(added)
    return found


def test_lock_pins_every_runtime_dependency_within_its_declared_range() -> None:
    pins = locked()
    assert LOCK.read_text().startswith("# This file was autogenerated by uv")
    assert "#    make lock\n" in LOCK.read_text(), "the lock names the command that remakes it"
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash: pip --require-hashes refuses the lock"
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run make lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement}: run make lock"
        )


def third_party_imports() -> dict[str, bool]:
    """Each third-party package the service imports, and whether an import of it runs when its
    module loads (rather than only inside a function)."""
    found: dict[str, bool] = {}
    for path in (ROOT / "service/cartsync").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        in_functions = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            for name in names:
                found[name] = found.get(name, False) or id(node) not in in_functions
    for own in {*sys.stdlib_module_names, "cartsync", "__future__"}:
        found.pop(own, None)
    return found


def optional_requirements() -> set[str]:
    """Packages of the service's optional extras (not the test tools)."""
    extras = pyproject("cartsync")["project"].get("optional-dependencies", {})
    return {
        canonicalize_name(Requirement(raw).name)
        for extra, requirements in extras.items()
        if extra != "test"
        for raw in requirements
    }


def test_everything_the_service_imports_is_a_locked_runtime_dependency() -> None:
    """An import of a package that is only another one's dependency breaks when that one moves;
    one from an optional extra breaks the image unless it waits until the feature is used."""
    distributions = importlib.metadata.packages_distributions()
    pins = locked()
    declared = {canonicalize_name(r.name) for r in runtime_requirements()}
    optional = optional_requirements()
    for module, at_load in sorted(third_party_imports().items()):
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if names & declared:
            assert names & pins.keys(), f"the service imports {module} ({names}): run make lock"
            continue
        assert names & optional, f"the service imports {module} ({names}): declare it in pyproject"
        assert not at_load, (
            f"{module} comes from an optional extra, so the image may lack it: import it only "
            "inside the functions of the feature that needs it"
        )


# --- changelog -----------------------------------------------------------------------------------


def test_changelog_keeps_a_changelog_and_names_the_current_version() -> None:
    text = CHANGELOG.read_text()
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sections[0] == "[Unreleased]"
    releases = [re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})", s) for s in sections[1:]]
    assert releases, "no release yet"
    assert all(releases), f"a release heading is not '[X.Y.Z] - YYYY-MM-DD': {sections}"
    versions = [Version(r[1]) for r in releases if r]
    assert versions == sorted(versions, reverse=True), "newest release first"
    assert released_version("cartsync") == str(versions[0]), "the service's version is unreleased"
    kinds = set(re.findall(r"^### (.+)$", text, re.MULTILINE))
    assert kinds <= CHANGE_KINDS, f"not a Keep a Changelog heading: {kinds - CHANGE_KINDS}"


# --- what a new user needs -----------------------------------------------------------------------


def ci_packages() -> set[str]:
    """The Debian packages .ci/run installs on a fresh machine."""
    script = (ROOT / ".ci/run").read_text()
    return {
        name for group in re.findall(r"need_apt\+=\(([^)]*)\)", script) for name in group.split()
    }


def test_readme_first_screen_names_what_make_test_needs() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    install = re.search(r"apt-get install ([a-z0-9 -]+)", first_screen)
    assert install, "the first screen does not say what to install"
    assert set(install.group(1).split()) >= ci_packages() - {"curl", "make"}
    for tool in ("chromium", "node"):
        assert tool in first_screen
    assert ".ci/run" in first_screen
    assert "docs/compatibility.md" in (ROOT / "README.md").read_text()
