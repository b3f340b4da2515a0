"""The benchmarks' bounded version: every benchmark runs end to end with its smallest plan
(``python -m bench NAME --smoke``), so a change that breaks one is found by the suite, not on
the day someone runs ``make bench``. The figures of such a run mean nothing and are not checked;
that the run completes, with every server it compares answering, is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each benchmark, and the rows its table must have: cartsync's and its floor's.
EXPECTED = {
    "mutation": ("cartsync", "floor"),
    "growth": ("| 1 (", "| 200 ("),
    "propagation": ("cartsync POST on A → event on B", "floor app"),
    "fanout": ("cartsync", "floor"),
    "idle": ("cartsync", "floor"),
    "events": ("events/s one worker delivers", "events on"),
}


def bench(*args: str, timeout_s: float = 120) -> tuple[str, list[str]]:
    """``python -m <args>`` from the repository, which must exit 0: its output and the rows of
    the markdown table it printed."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, [line for line in done.stdout.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_benchmark_runs_end_to_end(name: str) -> None:
    out, rows = bench("bench", name, "--smoke", timeout_s=240)
    assert len(rows) > 1, out
    for row in EXPECTED[name]:
        assert any(row in line for line in rows[1:]), (row, out)
    written = ROOT / "bench" / "results" / "smoke" / f"{name}.json"
    assert f"results: {written}" in out
    document = json.loads(written.read_text())
    assert document["name"] == name
    assert document["table"]["rows"]


def test_script_cost_measures_both_ways_the_store_can_run() -> None:
    out, rows = bench("bench.script_cost", "--calls", "20", "--runs", "1")
    for script in ("floor", "add line, FCALL", "add line, EVALSHA", "patch qty, FCALL"):
        assert any(row.startswith(f"| {script}") for row in rows), (script, out)


def test_request_cost_measures_cartsync_beside_its_floor() -> None:
    out, rows = bench("bench.request_cost", "--count", "64", "--repeats", "1")
    for operation in ("add line", "patch qty"):
        assert any(row.startswith(f"| {operation} |") for row in rows), (operation, out)
