"""Request budgets counted in this process's memory, for ``CARTSYNC_RATE_LIMIT_STORAGE=memory://``.

The same moving window as the ``limits`` library's memory storage (at most ``amount`` requests
in any ``period``), without its costs on every request: its asyncio storage starts a sweep of
every key, with a thread hop per key, after each hit (a tenth of a mutation's CPU), and its
synchronous one sweeps every key it ever saw from a timer thread. Here a hit touches only its own
queues, and keys whose window emptied are dropped by a sweep at most every ``SWEEP_S``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from limits import RateLimitItem

SWEEP_S = 10.0
"""How often idle keys are dropped: a key outlives its last request by at most its period plus
this, and the sweep's cost (one look per key) is paid at most this often."""

Key = tuple[int, int, tuple[str, ...]]


class MovingWindow:
    """At most ``item.amount`` hits in any ``item.get_expiry()`` seconds, per identity and item."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[Key, deque[float]] = {}
        self._periods: dict[Key, float] = {}
        self._next_sweep = clock() + SWEEP_S

    def hit(self, items: Sequence[RateLimitItem], identity: tuple[str, ...]) -> float:
        """Counts one request and answers 0, or counts nothing and answers the seconds until
        every item would admit it."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        wait = 0.0
        queues: list[deque[float]] = []
        for item in items:
            period = float(item.get_expiry())
            key = (item.amount, item.get_expiry(), identity)
            queue = self._hits.get(key)
            if queue is None:
                queue = self._hits[key] = deque()
                self._periods[key] = period
            while queue and queue[0] <= now - period:
                queue.popleft()
            if len(queue) >= item.amount:
                # Full: admitted again once the oldest hit of the window leaves it.
                wait = max(wait, queue[len(queue) - item.amount] + period - now)
            queues.append(queue)
        if wait > 0:
            return wait
        for queue in queues:
            queue.append(now)
        return 0.0

    def __len__(self) -> int:
        """Identities and items with a hit inside their window (or not swept yet)."""
        return len(self._hits)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_S
        idle = [
            key
            for key, queue in self._hits.items()
            if not queue or queue[-1] <= now - self._periods[key]
        ]
        for key in idle:
            del self._hits[key]
            del self._periods[key]
