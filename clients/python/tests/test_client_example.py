"""The example and the README's first snippet run, against the test session's own service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

from cartsync_client import CartsyncClient

CLIENT = Path(__file__).resolve().parents[1]
EXAMPLE = CLIENT / "examples" / "two_devices.py"


def _env(**extra: str) -> dict[str, str]:
    """Only the client's own source on the path: the example must not need the service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")}
    env["PYTHONPATH"] = str(CLIENT / "src")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_two_devices_example_with_a_customer_token(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    done = _run([], _env(CARTSYNC_URL=service.url, CARTSYNC_TOKEN=token))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "laptop <- snapshot at rev 0" in out
    assert "laptop <- rev 1 line.added by phone: TSHIRT-1 x 1" in out
    assert "laptop <- rev 7 line.removed by phone" in out
    assert re.search(r"^in sync at rev 7: TSHIRT-1 x 3, CAP-1 x 1;", out, re.MULTILINE), out
    async with CartsyncClient(service.url, token) as client:
        cart = await client.get_cart()
    assert [(x.sku, x.qty, x.attrs) for x in cart.lines] == [
        ("TSHIRT-1", 3, {"size": "L"}),
        ("CAP-1", 1, {}),
    ]


def test_two_devices_example_as_a_guest(service: ServiceProcess) -> None:
    done = _run([service.url], _env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no token given: using a new guest" in done.stdout
    assert "in sync at rev 7" in done.stdout


def test_example_needs_a_url() -> None:
    done = _run([], _env())
    assert done.returncode == 2
    assert "CARTSYNC_URL" in done.stderr


def test_readme_first_snippet_runs(service: ServiceProcess, tokens: Tokens) -> None:
    readme = (CLIENT / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    program = "\n".join(
        [
            "import asyncio, os",
            "async def main(token):",
            textwrap.indent(snippets[0].replace("http://127.0.0.1:8000", service.url), "    "),
            "asyncio.run(main(os.environ['TOKEN']))",
        ]
    )
    token = tokens.token("customer", "readme-reader")
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=_env(TOKEN=token),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=CLIENT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
