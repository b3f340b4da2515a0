"""The documentation works as written: its shell examples run against a real service and Redis."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cartsync.settings import Settings
from cartsync.web.app import ENDPOINTS, create_app
from tests.support.processes import ROOT, TEST_SECRET, RedisProcess, ServiceProcess, service_env

DOCS = ROOT / "docs"
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
"""Where the examples expect ``cartsync serve``: replaced in http:// and ws:// URLs alike."""
EXAMPLES_TIMEOUT_S = 120

_FENCE = re.compile(
    r"(?:<!--\s*expect-fail(?P<code>[^>]*?)\s*-->\s*\n)?^```sh[ \t]*\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_VENV_COMMAND = re.compile(r"\.venv/bin/(\S+)")


@dataclass(frozen=True)
class Example:
    source: str
    line: int
    body: str
    expect_fail: bool
    error_code: str


def sh_examples(path: Path) -> list[Example]:
    """The ```sh blocks in order; ``<!-- expect-fail [code] -->`` just above marks a failure."""
    markdown = path.read_text()
    return [
        Example(
            source=str(path.relative_to(ROOT)),
            line=markdown.count("\n", 0, m.start("body")) + 1,
            body=m.group("body"),
            expect_fail=m.group(0).startswith("<!--"),
            error_code=(m.group("code") or "").strip(),
        )
        for m in _FENCE.finditer(markdown)
    ]


def example_script(examples: list[Example], address: str) -> str:
    """One bash script: every example in order, expected failures inverted and checked.

    ``.venv/bin/cartsync`` and ``.venv/bin/python`` become the interpreter running the tests, so
    the examples need no installed venv; the service address becomes the private service's.
    """
    venv = {"cartsync": f'"{sys.executable}" -m cartsync', "python": f'"{sys.executable}"'}
    parts = []
    for ex in examples:
        unknown = set(_VENV_COMMAND.findall(ex.body)) - set(venv)
        assert not unknown, f"{ex.source}:{ex.line}: the test cannot run .venv/bin/{unknown}"
        body = ex.body.replace(DOCUMENTED_ADDRESS, address)
        body = _VENV_COMMAND.sub(lambda m: venv[m.group(1)], body)
        parts.append(f"printf '\\n### {ex.source} line {ex.line}\\n'")
        if not ex.expect_fail:
            parts.append(body)
            continue
        parts.append(
            f"if _out=$( (\n{body}) 2>&1 ); then\n"
            '  printf "%s\\n" "$_out"; echo UNEXPECTED-SUCCESS; exit 1\n'
            "fi\n"
            'printf "%s\\n" "$_out"'
        )
        if ex.error_code:
            parts.append(
                f'case "$_out" in *\'"code":"{ex.error_code}"\'*) ;; '
                f'*) echo "EXPECTED error code {ex.error_code}"; exit 1 ;; esac'
            )
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class DocsService:
    process: ServiceProcess
    env: dict[str, str]
    workdir: Path

    def token(self, role: str, subject: str) -> str:
        """A token from the CLI the docs tell people to use, with the service's settings."""
        minted = subprocess.run(
            [sys.executable, "-m", "cartsync", "token", role, subject],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert minted.returncode == 0, minted.stderr
        return minted.stdout.strip()

    def run(self, examples: list[Example], extra_env: dict[str, str] | None = None) -> str:
        """Run the examples in one ``bash -euo pipefail``; their output, or a failure showing it."""
        script = self.workdir / "examples.sh"
        script.write_text(example_script(examples, f"127.0.0.1:{self.process.port}"))
        run = subprocess.run(
            ["bash", "-euo", "pipefail", str(script)],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXAMPLES_TIMEOUT_S,
            check=False,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, f"the examples failed (exit {run.returncode}):\n{output}"
        assert "UNEXPECTED-SUCCESS" not in output
        assert output.count("\n### ") == len(examples), output
        return output


@pytest.fixture
def docs_service(tmp_path: Path) -> Iterator[DocsService]:
    """A private Redis and service, so the examples start from nothing and never share state."""
    redis_server = RedisProcess(tmp_path / "redis").start()
    try:
        env = service_env(redis_server.url, tmp_path / "service")
        service = ServiceProcess(env).start()
        try:
            yield DocsService(service, env, tmp_path)
        finally:
            service.stop()
    finally:
        redis_server.stop()


def test_api_examples_run_as_written(docs_service: DocsService) -> None:
    examples = sh_examples(DOCS / "api.md")
    assert len(examples) >= 10, "docs/api.md lost its ```sh examples"
    assert any(ex.expect_fail for ex in examples)
    token = docs_service.token("customer", f"docs-{uuid.uuid4().hex[:12]}")

    output = docs_service.run(examples, {"TOKEN": token})

    assert "idempotent-replayed: true" in output.lower()


def test_readme_quickstart_runs_as_written(docs_service: DocsService) -> None:
    examples = sh_examples(ROOT / "README.md")
    assert len(examples) == 1, "the README's quickstart is its one ```sh block"

    output = docs_service.run(examples)

    assert '"sku":"TSHIRT-1"' in output


def test_every_setting_and_route_is_documented() -> None:
    source = (ROOT / "service" / "cartsync" / "settings.py").read_text()
    names = sorted(set(re.findall(r'config\(\s*"([A-Z0-9_]+)"', source)))
    assert len(names) >= 20, f"the settings are no longer read with config(...): {names}"
    configuration = (DOCS / "configuration.md").read_text()
    missing = [f"CARTSYNC_{n}" for n in names if f"`CARTSYNC_{n}`" not in configuration]
    assert not missing, f"docs/configuration.md lacks {missing}"

    api = (DOCS / "api.md").read_text()
    routes = {f"{ep.method} /v1{ep.path}" for ep in ENDPOINTS}
    settings = Settings.from_env({"CARTSYNC_JWT_SECRETS": TEST_SECRET})
    for route in create_app(settings).routes:
        path = getattr(route, "path", "")
        # The service and staff mirrors are documented as prefixes, route by route they repeat.
        if path.startswith(("/v1/customers/", "/v1/grants/{grant_id}/")):
            continue
        if path == "/static":  # the folder of the pages' files
            continue
        methods = getattr(route, "methods", None)
        if methods is None:  # a websocket route
            routes.add(f"GET {path}")
        routes.update(f"{m} {path}" for m in methods or () if m != "HEAD")
    undocumented = sorted(r for r in routes if f"`{r}`" not in api)
    assert not undocumented, f"docs/api.md lacks {undocumented}"
    assert "/v1/customers/{customer_id}" in api
    assert "/v1/grants/{grant_id}/..." in api
    assert "/static/" in api


def test_readme_first_screen_gives_the_make_targets() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert "make run" in first_screen
    assert "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"Makefile has no {target} target"


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_the_docs_reach_a_file_and_a_heading() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto: ...
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md":
                anchors = {_anchor(h) for h in _HEADING.findall(linked.read_text())}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
