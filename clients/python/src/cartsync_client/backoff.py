"""How long to wait before trying again: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of many
clients that failed together, e.g. every phone of a shop when the service restarts, instead of
sending them back in synchronised waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "parse_retry_after"]


@dataclass(frozen=True)
class Backoff:
    """Delays of ``uniform(0, min(cap, base * 2**attempt))`` seconds, attempt counted from 0."""

    base: float = 0.2
    cap: float = 10.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("Backoff needs 0 < base <= cap")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before retry number ``attempt + 1``; never shorter than ``retry_after``."""
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 32))
        jitter = random.uniform(0, ceiling)  # noqa: S311 - spreading retries, not a secret
        return jitter if retry_after is None else max(retry_after, jitter)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
