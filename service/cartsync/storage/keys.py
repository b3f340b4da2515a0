"""Every Redis key and channel name, in one place.

All keys of one owner share the hash tag ``{<owner id>}`` so that one script can touch them all,
on a single Redis or on a Cluster slot.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from functools import cache

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

    @property
    def presence(self) -> str:
        """Hash: device id -> the live socket's device JSON (label, kind, role, instance)."""
        return self._k("presence")

    @property
    def support_reads(self) -> str:
        """List: support's reads of this owner's data, newest first (who, when, why, what)."""
        return self._k("audit")

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


def instance_key(instance: str) -> str:
    """String with a TTL: this service instance is alive (its presence entries are current)."""
    return f"{PREFIX}:inst:{instance}"


def handoff_key(code: str) -> str:
    """String: the owner a one-time hand-off code points at, until claimed or expired."""
    return f"{PREFIX}:{{h:{code}}}:handoff"


def grant_key(grant_id: str) -> str:
    """String: a grant, looked up by id on every staff request; deleting it revokes access."""
    return f"{PREFIX}:{{gr:{grant_id}}}:grant"


# Back-office events ------------------------------------------------------------------------
# An owner's change writes its event into the outbox of the owner's *partition*, in the same
# script, so on a Cluster the partition's keys must hash to the owner's slot. A partition is
# the owner's slot modulo the partition count (16,384 on a Cluster: one partition per slot),
# and its keys carry a tag chosen to hash to that partition's slot (``slot_tag``).

SLOTS = 16384


def owner_slot(owner: str) -> int:
    """The Cluster slot of every ``cs:{<owner>}:*`` key."""
    return binascii.crc_hqx(owner.encode(), 0) % SLOTS


@cache
def _slot_tags() -> tuple[str, ...]:
    """One short hash tag per slot, the first ``o<n>`` that hashes there (about 0.2 s once)."""
    tags: list[str | None] = [None] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = f"o{n}"
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        n += 1
    return tuple(t or "" for t in tags)


def slot_tag(slot: int) -> str:
    return _slot_tags()[slot]


@dataclass(frozen=True)
class PartitionKeys:
    """The outbox, deadlines and delivery queues of one partition, all under one tag."""

    partition: int

    def _k(self, name: str) -> str:
        return f"{PREFIX}:{{{slot_tag(self.partition)}}}:{name}"

    @property
    def outbox(self) -> str:
        """Stream: back-office events as the owners' scripts wrote them (group ``fanout``)."""
        return self._k("outbox")

    @property
    def remaining(self) -> str:
        """Hash: outbox entry id -> deliveries still owed; the entry goes when it reaches 0."""
        return self._k("owed")

    @property
    def deadlines(self) -> str:
        """Sorted set: '<a|x|e>|<owner>' (abandoned, expiring, expired) -> due time (ms)."""
        return self._k("due")

    @property
    def carts(self) -> str:
        """Hash: owner -> what a ``cart.expired`` event names once the cart's keys are gone."""
        return self._k("carts")

    def queue(self, endpoint: str) -> str:
        """Hash: owner -> space-separated outbox ids still to deliver to ``endpoint``, in order."""
        return self._k(f"q:{endpoint}")

    def ready(self, endpoint: str) -> str:
        """Sorted set: owner -> when its first queued event may be tried (ms); also the lease."""
        return self._k(f"r:{endpoint}")

    def attempts(self, endpoint: str) -> str:
        """Hash: owner -> '<attempts>|<first attempt ms>' of its first queued event."""
        return self._k(f"n:{endpoint}")


def partition_of(owner: str, partitions: int) -> PartitionKeys:
    return PartitionKeys(owner_slot(owner) % partitions)


def dead_letters_key(endpoint: str) -> str:
    """Stream: events given up for ``endpoint`` (retries exhausted, or the endpoint said 410)."""
    return f"{PREFIX}:{{wh:{endpoint}}}:dead"


ENDPOINTS_GONE_KEY = f"{PREFIX}:{{wh}}:gone"
"""Hash: endpoint name -> when it answered 410 Gone; nothing more is sent to it."""

OUTBOX_HINTS_KEY = f"{PREFIX}:{{events}}:hints"
"""Set: partitions that just got events; a wake-up for the workers, not the record."""

FEED_KEY = f"{PREFIX}:{{events}}:feed"
"""Stream: every back-office event in delivery order per customer, for ``GET /v1/events``."""
