"""Node.js for the Python suite: find node and npm, install a folder's locked packages once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

NPM_CI_TIMEOUT_S = 300


def tool(name: str, install_hint: str) -> str:
    """The path of a program the suite needs; a missing one fails the test, never skips it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH; .ci/run installs it ({install_hint})", pytrace=False)
    return found


def node() -> str:
    return tool("node", "apt-get install nodejs npm")


def npm_ci(folder: Path) -> None:
    """``npm ci`` in ``folder`` from its lockfile (bounded in time); fails with npm's output."""
    npm = tool("npm", "apt-get install nodejs npm")
    args = [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
    try:
        done = subprocess.run(
            args, cwd=folder, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"npm ci in {folder} took over {NPM_CI_TIMEOUT_S} s: {exc.output!r}")
    if done.returncode != 0:
        pytest.fail(f"npm ci in {folder} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """Run a node program to completion: its exit code and its output (stdout, then stderr).

    It runs in a process group of its own, so that on a timeout the test files ``node --test``
    started and any browser are killed with it.
    """
    proc = subprocess.Popen(
        [node(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        return -1, f"killed after {timeout_s} s\n{out}{err}"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind (a browser)
    return proc.returncode, out + err
