"""Open-loop paced load: sends started on a schedule, each as its own task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pace:
    """How a paced run went: sends started, over what span, and how late the latest start was."""

    started: int
    span_s: float
    """From the first start to the last."""
    worst_lag_ms: float

    @property
    def achieved_per_s(self) -> float:
        """The rate the starts kept; compare with the rate asked for."""
        return (self.started - 1) / self.span_s if self.span_s > 0 else 0.0


async def paced(
    rate_per_s: float, count: int, max_s: float, send: Callable[[int], Coroutine[Any, Any, None]]
) -> Pace:
    """Start ``send(i)`` at ``rate_per_s`` for at most ``count`` sends and ``max_s`` seconds.

    Each send runs as its own task, so a slow reply does not delay the next one (an open-loop
    load, as from many devices); the call returns once every started send has finished.
    """
    interval_ns = round(1e9 / rate_per_s)
    budget_ns = round(max_s * 1e9)
    started = 0
    worst_lag_ns = 0
    begin = last = time.perf_counter_ns()
    async with asyncio.TaskGroup() as group:
        for i in range(count):
            due = begin + i * interval_ns
            if due - begin > budget_ns:
                break
            wait_ns = due - time.perf_counter_ns()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            last = time.perf_counter_ns()
            worst_lag_ns = max(worst_lag_ns, last - due)
            group.create_task(send(i))
            started += 1
    return Pace(started=started, span_s=(last - begin) / 1e9, worst_lag_ms=worst_lag_ns / 1e6)


@dataclass(frozen=True)
class Closed:
    """How a closed-loop run went: each request's time, failures, and the span they took."""

    samples_ns: list[int]
    errors: int
    span_s: float

    @property
    def per_s(self) -> float:
        return len(self.samples_ns) / self.span_s if self.span_s > 0 else 0.0


async def closed(
    workers: int,
    max_count: int,
    max_s: float,
    send: Callable[[int, int], Coroutine[Any, Any, bool]],
) -> Closed:
    """``workers`` loops, each sending ``send(worker, i)`` as soon as its last answer is in.

    Stops after ``max_count`` sends in all or ``max_s`` seconds; ``send`` returns whether the
    answer was the expected one. Throughput is what completed over the whole span.
    """
    samples: list[int] = []
    errors = 0
    issued = 0
    begin = time.perf_counter_ns()
    deadline = begin + round(max_s * 1e9)

    async def loop(worker: int) -> None:
        nonlocal errors, issued
        i = 0
        while issued < max_count and time.perf_counter_ns() < deadline:
            issued += 1
            started = time.perf_counter_ns()
            ok = await send(worker, i)
            i += 1
            if ok:
                samples.append(time.perf_counter_ns() - started)
            else:
                errors += 1

    async with asyncio.TaskGroup() as group:
        for worker in range(workers):
            group.create_task(loop(worker))
    return Closed(samples, errors, (time.perf_counter_ns() - begin) / 1e9)
