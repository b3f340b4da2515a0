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


@pytest.mark.parametrize("name", list(EXPECTED))
def test_benchmark_runs_end_to_end(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(table) > 2, done.stdout
    for row in EXPECTED[name]:
        assert any(row in line for line in table[2:]), (row, done.stdout)
    written = ROOT / "bench" / "results" / "smoke" / f"{name}.json"
    assert f"results: {written}" in done.stdout
    document = json.loads(written.read_text())
    assert document["name"] == name
    assert document["table"]["rows"]


def test_script_cost_measures_both_ways_the_store_can_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.script_cost", "--calls", "20", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for script in ("floor", "add line, FCALL", "add line, EVALSHA", "patch qty, FCALL"):
        assert any(row.startswith(f"| {script}") for row in rows), (script, done.stdout)


def test_request_cost_measures_cartsync_beside_its_floor() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.request_cost", "--count", "64", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for operation in ("add line", "patch qty"):
        assert any(row.startswith(f"| {operation} |") for row in rows), (operation, done.stdout)
