"""One timer wheel per process for what live sockets must do on time.

Pings, the silence check and the end of a token or a grant are deadlines. A loop timer or a
sleeping task per socket and concern costs memory on every idle socket; the wheel is one task
and one set per tick, however many sockets: each item is filed under the tick of its next
deadline, and when that tick comes the wheel calls its ``due``, which does what is due and
names the next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Protocol

log = logging.getLogger("cartsync.live")


class Timed(Protocol):
    def due(self, now: float) -> float | None:
        """Do what is due at ``now`` (loop time); the next deadline, or None to be dropped."""

    def overdue(self, now: float) -> None:
        """Something ``watch``ed did not finish by its deadline."""


class Wheel:
    """Deadlines in loop time, kept to ``resolution_s``; ``due`` runs at most that late."""

    def __init__(self, resolution_s: float) -> None:
        self._resolution = resolution_s
        self._slots: dict[int, set[Timed]] = {}
        self._tick_of: dict[Timed, int] = {}
        self._watched: dict[Timed, float] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._tick_of)

    def items(self) -> list[Timed]:
        return list(self._tick_of)

    def schedule(self, item: Timed, when: float) -> None:
        """File ``item`` for ``when`` (loop time), replacing its earlier deadline."""
        self.forget(item)
        tick = math.ceil(when / self._resolution)
        self._slots.setdefault(tick, set()).add(item)
        self._tick_of[item] = tick

    def watch(self, item: Timed, deadline: float) -> None:
        """Call ``item.overdue`` if ``unwatch`` has not come by ``deadline`` (a pending send:
        two dict operations, where a timeout per send would cost a loop timer each)."""
        self._watched[item] = deadline

    def unwatch(self, item: Timed) -> None:
        self._watched.pop(item, None)

    def forget(self, item: Timed) -> None:
        self._watched.pop(item, None)
        tick = self._tick_of.pop(item, None)
        if tick is not None:
            slot = self._slots.get(tick)
            if slot is not None:
                slot.discard(item)
                if not slot:
                    del self._slots[tick]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._turn(), name="live-wheel")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _turn(self) -> None:
        loop = asyncio.get_running_loop()
        done = math.floor(loop.time() / self._resolution)
        while True:
            await asyncio.sleep(max(0.0, (done + 1) * self._resolution - loop.time()))
            now = loop.time()
            current = math.floor(now / self._resolution)
            # Normally one tick is due; after a stall, every tick the loop slept through.
            for tick in sorted(t for t in self._slots if t <= current):
                for item in self._slots.pop(tick, ()):
                    del self._tick_of[item]
                    self._run(item, now)
            done = max(done, current)
            if self._watched:
                late = [item for item, deadline in self._watched.items() if deadline <= now]
                for item in late:
                    del self._watched[item]
                    try:
                        item.overdue(now)
                    except Exception:
                        log.exception("a live socket's overdue handler failed")

    def _run(self, item: Timed, now: float) -> None:
        try:
            following = item.due(now)
        except Exception:
            log.exception("a live socket's timer failed; it is dropped from the wheel")
            return
        if following is not None:
            self.schedule(item, following)
