"""Latency samples matched by key, percentiles, and their spread over repeated runs."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.load import Pace


@dataclass(frozen=True)
class Latency:
    """One run's latencies in milliseconds, and how many expected samples never arrived."""

    n: int
    lost: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ns: Sequence[int], *, lost: int = 0) -> Latency:
        if not samples_ns:
            nan = float("nan")
            return cls(n=0, lost=lost, p50_ms=nan, p99_ms=nan, max_ms=nan)
        ordered = sorted(samples_ns)
        return cls(
            n=len(ordered),
            lost=lost,
            p50_ms=_rank(ordered, 500) / 1e6,
            p99_ms=_rank(ordered, 990) / 1e6,
            max_ms=ordered[-1] / 1e6,
        )


Key = tuple[str, int]
"""What matches a send to its receipt, e.g. (customer, revision) or ("", sequence number)."""


class Ledger:
    """Send and receipt stamps (``perf_counter_ns``) by key, in either order.

    ``complete`` is set while every recorded send has its receipt; once the sends are over it
    stays set, so waiting on it ends a run as soon as the last receipt is in.
    """

    def __init__(self) -> None:
        self.sent: dict[Key, int] = {}
        self.received: dict[Key, int] = {}
        self._missing: set[Key] = set()
        self.complete = asyncio.Event()
        self.complete.set()

    def on_sent(self, key: Key, stamp_ns: int) -> None:
        self.sent[key] = stamp_ns
        if key not in self.received:
            self._missing.add(key)
            self.complete.clear()

    def on_received(self, key: Key, stamp_ns: int) -> None:
        self.received.setdefault(key, stamp_ns)
        self._missing.discard(key)
        if not self._missing:
            self.complete.set()

    def forget(self, key: Key) -> None:
        """A send that failed: it is an error, not a lost receipt."""
        self.sent.pop(key, None)
        self._missing.discard(key)
        if not self._missing:
            self.complete.set()

    def has(self, keys: Sequence[Key]) -> bool:
        return all(k in self.received for k in keys)

    async def settle(self, timeout_s: float) -> None:
        """Wait until every send has its receipt, or ``timeout_s`` (what is left counts as lost)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.complete.wait(), timeout_s)

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()
        self._missing.clear()
        self.complete.set()

    def latency(self) -> Latency:
        samples = [self.received[k] - t for k, t in self.sent.items() if k in self.received]
        return Latency.of(samples, lost=len(self.sent) - len(samples))


def _rank(ordered: Sequence[int], permille: int) -> int:
    """Nearest-rank percentile: the smallest sample with ``permille``/1000 of all at or below."""
    index = -(-permille * len(ordered) // 1000) - 1  # integer ceil: no float fuzz at n=400
    return ordered[max(0, min(index, len(ordered) - 1))]


STATS = ("p50_ms", "p99_ms", "max_ms")


@dataclass(frozen=True)
class Spread:
    """A statistic over repeated runs: the median run and the lowest and highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(median=statistics.median(values), low=min(values), high=max(values))

    def cell(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


@dataclass
class Series:
    """One configuration measured ``REPEATS`` times."""

    label: str
    params: dict[str, Any]
    runs: list[Latency] = field(default_factory=list)
    paces: list[Pace] = field(default_factory=list)

    def spread(self, stat: str) -> Spread:
        return Spread.of([getattr(run, stat) for run in self.runs])

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "params": self.params,
            "summary": {stat: asdict(self.spread(stat)) for stat in STATS},
            "runs": [asdict(run) for run in self.runs],
            "pace": [{**asdict(p), "achieved_per_s": p.achieved_per_s} for p in self.paces],
        }


def ratio(value: float, floor: float) -> str:
    return f"{value / floor:.1f}x" if floor > 0 else "n/a"
