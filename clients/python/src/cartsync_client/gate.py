"""``RevisionGate``: which live events reach the caller, each revision once and in order."""

from __future__ import annotations

from typing import Literal

__all__ = ["RevisionGate", "Verdict"]

Verdict = Literal["deliver", "drop", "resync", "snapshot"]


class RevisionGate:
    """Which events reach the caller: each revision once, in order. No I/O, so it is testable.

    ``rev`` is the last revision handed over (None until a snapshot, when started without
    ``since``). An event at or below it is a duplicate; one beyond ``rev + 1`` means revisions
    went missing, and the answer is to ``sync`` again, once, then wait for the log to fill the
    gap (asking again only if it stays open ``resync_after_s``). The next event of a type the
    client does not know means a ``snapshot``; later events wait for it.
    """

    def __init__(self, since: int | None, resync_after_s: float = 5.0) -> None:
        self.rev = since
        self.epoch: str | None = None
        self.at: str | None = None
        """When the change at ``rev`` was made: sent on resume, so that a server whose failover
        lost that change (and gave its number to another) answers with a snapshot."""
        self.resync_after_s = resync_after_s
        self._awaiting_sync = False
        self._awaiting_snapshot = False
        self._sync_sent_at = 0.0

    def sync_sent(self, now: float) -> None:
        self._awaiting_sync = True
        self._sync_sent_at = now

    def snapshot(self, rev: int, *, epoch: str | None = None, at: str | None = None) -> None:
        """A snapshot replaces everything, even at a lower revision (the owner was erased)."""
        self.rev, self.epoch, self.at = rev, epoch, at
        self._awaiting_sync = self._awaiting_snapshot = False

    def event(
        self,
        rev: int,
        now: float,
        *,
        epoch: str | None = None,
        at: str | None = None,
        known: bool = True,
    ) -> Verdict:
        if self.rev is None or rev <= self.rev:
            return "drop"  # before the first snapshot, or already handed over
        stale = now - self._sync_sent_at > self.resync_after_s
        if self._awaiting_snapshot:
            return "snapshot" if stale else "drop"
        if rev == self.rev + 1 and not known:
            self._awaiting_snapshot = True
            return "snapshot"
        if rev > self.rev + 1:
            return "resync" if not self._awaiting_sync or stale else "drop"
        self.rev, self.at = rev, at
        self.epoch = epoch or self.epoch
        self._awaiting_sync = False
        return "deliver"
