"""``python -m bench NAME [--quick | --smoke]``: run benchmarks, print markdown, write
bench/results/."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from bench import events, fanout, growth, idle, mutation, propagation
from bench.harness import RESULTS_DIR, Report, unpin_self

BENCHMARKS: dict[str, Callable[[str], Report]] = {
    mutation.NAME: mutation.run,
    growth.NAME: growth.run,
    propagation.NAME: propagation.run,
    fanout.NAME: fanout.run,
    idle.NAME: idle.run,
    events.NAME: events.run,
}
"""Every benchmark by name: a function of its plan's name (``full``, ``quick`` or ``smoke``)
that starts, measures and stops."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="cartsync benchmarks, each with its floor."
    )
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="the benchmark, or all")
    plans = parser.add_mutually_exclusive_group()
    plans.add_argument(
        "--quick", action="store_true", help="smaller counts: all of them in a few minutes"
    )
    plans.add_argument(
        "--smoke",
        action="store_true",
        help="the least that exercises every path (the test suite runs it); figures mean nothing",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every started process is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    for name in names:
        try:
            report = BENCHMARKS[name]("quick" if args.quick else "smoke" if args.smoke else "full")
        finally:
            unpin_self()
        # Smoke figures mean nothing: kept apart, so they never replace a real run's.
        path = report.write(RESULTS_DIR / "smoke" if args.smoke else RESULTS_DIR)
        sys.stdout.write(report.markdown())
        sys.stdout.write(f"\nresults: {path}\n")
        sys.stdout.flush()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
