"""A circuit breaker: stop calling a catalogue that keeps failing, try again after a while.

Closed: calls pass, and ``failures`` failures in a row open it. Open: calls are refused at once
for ``reset_s`` seconds, so a dead catalogue costs no timeouts. Then half-open: one trial call
passes; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger("cartsync.catalog")

State = Literal["closed", "open", "half-open"]


class Breaker:
    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._reset_s:
            return "open"
        return "half-open"

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._trial:
            return False
        self._trial = True
        return True

    def abandoned(self) -> None:
        """The call ended without an answer either way (cancelled): another may try."""
        self._trial = False

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("catalogue answers again: circuit closed")
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failed(self) -> None:
        self._failures += 1
        if self._trial or (self._opened_at is None and self._failures >= self._threshold):
            if self._opened_at is None:
                log.warning(
                    "catalogue failed %d times in a row: circuit open for %.1f s",
                    self._failures,
                    self._reset_s,
                )
            self._opened_at = self._clock()
        self._trial = False
