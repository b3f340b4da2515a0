"""Every Redis key and channel name, in one place.

All keys of one owner share the hash tag ``{<owner id>}`` so that one script can touch them all,
on a single Redis or on a Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "cs"


@dataclass(frozen=True)
class OwnerKeys:
    """The fixed set of keys one owner's data lives in."""

    owner: str

    def _k(self, name: str) -> str:
        return f"{PREFIX}:{{{self.owner}}}:{name}"

    @property
    def meta(self) -> str:
        """Hash: rev, seq, cart_id, currency, note, created_at, updated_at."""
        return self._k("meta")

    @property
    def lines(self) -> str:
        """Hash: line id -> line JSON."""
        return self._k("lines")

    @property
    def line_index(self) -> str:
        """Hash: sku + canonical attrs -> line id (no duplicate lines)."""
        return self._k("lidx")

    @property
    def wishlists(self) -> str:
        """Hash: wishlist id -> wishlist JSON (without items)."""
        return self._k("wl")

    @property
    def wish_items(self) -> str:
        """Hash: '<wishlist id>/<item id>' -> item JSON."""
        return self._k("wli")

    @property
    def wish_index(self) -> str:
        """Hash: '<wishlist id>/<sku + canonical attrs>' -> item id."""
        return self._k("widx")

    @property
    def log(self) -> str:
        """Stream: the owner's events, entry id '<rev>-0', capped."""
        return self._k("log")

    @property
    def idempotency(self) -> str:
        """Hash: operation id -> first outcome of that operation."""
        return self._k("idem")

    @property
    def idempotency_expiry(self) -> str:
        """Sorted set: operation id scored by when its record may be dropped (ms)."""
        return self._k("idemx")

    @property
    def channel(self) -> str:
        """Pub/sub channel that wakes the owner's live sockets."""
        return self._k("ch")

    @property
    def merge_claim(self) -> str:
        """String: a guest's pending or finished merge into a customer."""
        return self._k("merge")

    @property
    def grants(self) -> str:
        """Hash: grant id -> grant JSON (staff access the owner consented to)."""
        return self._k("grants")

    def data_keys(self) -> list[str]:
        """The keys a mutation script receives, in the order the scripts expect."""
        return [
            self.meta,
            self.lines,
            self.line_index,
            self.wishlists,
            self.wish_items,
            self.wish_index,
            self.log,
            self.idempotency,
            self.idempotency_expiry,
            self.channel,
            self.merge_claim,
            self.grants,
        ]


def handoff_key(code: str) -> str:
    """String: the owner a one-time hand-off code points at, until claimed or expired."""
    return f"{PREFIX}:{{h:{code}}}:handoff"


def grant_key(grant_id: str) -> str:
    """String: a grant, looked up by id on every staff request; deleting it revokes access."""
    return f"{PREFIX}:{{gr:{grant_id}}}:grant"
