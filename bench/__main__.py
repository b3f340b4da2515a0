"""``python -m bench NAME [--quick]``: run benchmarks, print markdown, write bench/results/."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from bench import events, fanout, growth, idle, mutation, propagation
from bench.harness import Report, unpin_self

BENCHMARKS: dict[str, Callable[[bool], Report]] = {
    mutation.NAME: mutation.run,
    growth.NAME: growth.run,
    propagation.NAME: propagation.run,
    fanout.NAME: fanout.run,
    idle.NAME: idle.run,
    events.NAME: events.run,
}
"""Every benchmark by name: a function of ``quick`` that starts, measures and stops."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="cartsync benchmarks, each with its floor."
    )
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="the benchmark, or all")
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts: all of them in under 3 minutes"
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every started process is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    for name in names:
        try:
            report = BENCHMARKS[name](args.quick)
        finally:
            unpin_self()
        path = report.write()
        sys.stdout.write(report.markdown())
        sys.stdout.write(f"\nresults: {path}\n")
        sys.stdout.flush()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
