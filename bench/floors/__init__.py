"""Floors: the least a server built on the same parts can do, started as their own processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.harness import Command, Processes

ROOT = Path(__file__).resolve().parents[2]


def minimal_app(procs: Processes, redis_url: str) -> Command:
    """bench/floors/minimal_app.py on Hypercorn: one process and worker, as ``cartsync serve``."""
    env = {**os.environ, "BENCH_REDIS_URL": redis_url}
    paths = [str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    args = [
        sys.executable,
        "-m",
        "hypercorn",
        "--workers",
        "0",
        "--config",
        "python:bench.floors.minimal_app.HypercornConfig",
        "--bind",
        "127.0.0.1:{port}",
        "bench.floors.minimal_app:app",
    ]
    return procs.command("floor app (Starlette on Hypercorn)", args, env, "/healthz")
