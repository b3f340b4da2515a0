"""The Redis store: one script call per change, one per consistent read."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import msgspec
import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cartsync.domain import merge as merging
from cartsync.domain.consent import Grant, new_code
from cartsync.domain.limits import Limits
from cartsync.domain.model import Actor, Cart, Event, Line, WishItem, Wishlist, item_order, line_key
from cartsync.domain.pickup import stored_collection
from cartsync.domain.pricing import cart_totals, with_totals
from cartsync.domain.principal import Owner
from cartsync.errors import (
    CartsyncError,
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    LimitExceeded,
    NotFound,
    RevisionMismatch,
    StoreUnavailable,
)
from cartsync.storage.keys import SLOTS, OwnerKeys, grant_key, handoff_key, partition_of
from cartsync.storage.outbox import OutboxConfig, OutboxHints
from cartsync.storage.scripts import StoreScripts

AnyRedis = Redis | RedisCluster
Reprice = Callable[[list[Line]], Awaitable[list[Line]]]
"""Gives the lines a guest brings to a merge their current names and prices (the catalogue)."""
T = TypeVar("T")

CLAIM_TTL_MS = 5 * 60 * 1000
MERGE_ATTEMPTS = 8
SERVER_OP_TTL_MS = 10 * 60 * 1000
"""Operation ids the server makes only guard against redis-py re-sending a script; short-lived."""

_REFUSALS: Mapping[str, type[CartsyncError]] = {
    "limit_exceeded": LimitExceeded,
    "line_not_found": NotFound,
    "wishlist_not_found": NotFound,
    "item_not_found": NotFound,
    "line_conflict": Conflict,
    "wishlist_name_taken": Conflict,
    "cart_merging": Conflict,
    "guest_merged": Conflict,
    "guest_merged_elsewhere": Conflict,
    "merge_not_claimed": Conflict,
    "cart_empty": InvalidInput,
    "invalid_pickup": InvalidInput,
    "wishlist_protected": InvalidInput,
}

_STORE_DOWN = (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError, rexc.ReadOnlyError)


def now_iso() -> str:
    """UTC timestamps with milliseconds, the one format every stored time uses."""
    return iso_at(time.time_ns() // 1_000_000)


_second: tuple[int, str] = (-1, "")
"""The last second formatted: a change formats the time twice, and many share a second."""


def iso_at(unix_ms: int) -> str:
    """``now_iso`` of a Unix time in milliseconds (``datetime.isoformat`` cost 3x as much)."""
    global _second
    seconds, ms = divmod(unix_ms, 1000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{ms:03d}Z"


@dataclass(frozen=True)
class WriteContext:
    """Who writes, and what makes the write safe to repeat or conditional."""

    actor: Actor
    idempotency_key: str | None = None
    fingerprint: str = ""
    expected_rev: int | None = None


@dataclass(frozen=True)
class Mutation:
    """A change's outcome: the response body is produced by the script, ready to send."""

    status: int
    rev: int
    body: bytes
    replayed: bool


@dataclass(frozen=True)
class Snapshot:
    rev: int
    epoch: str | None
    cart: Cart
    wishlists: list[Wishlist]
    raw_events: list[bytes]
    log_first: int | None

    @property
    def events(self) -> list[Event]:
        return [_event_dec.decode(raw) for raw in self.raw_events]


@dataclass(frozen=True)
class MergeReport:
    rev: int
    already_merged: bool
    summary: dict[str, int]


@dataclass(frozen=True)
class MergePreview:
    """What a merge would make of the customer's data, planned at the customer's ``rev``."""

    rev: int
    cart: Cart
    wishlists: list[Wishlist]
    already_merged: bool
    summary: dict[str, int]


class _StoredWishlist(msgspec.Struct):
    id: str
    name: str
    created_at: str
    updated_at: str


class _Claim(msgspec.Struct):
    merge_id: str
    customer: str
    state: Literal["claimed", "done"]
    rev: int


_actor_enc = msgspec.json.Encoder()
_payload_enc = msgspec.json.Encoder()
_line_dec = msgspec.json.Decoder(Line)
_wishlist_dec = msgspec.json.Decoder(_StoredWishlist)
_item_dec = msgspec.json.Decoder(WishItem)
_event_dec = msgspec.json.Decoder(Event)
_claim_dec = msgspec.json.Decoder(_Claim)
_grant_dec = msgspec.json.Decoder(Grant)


class CartStore:
    """Carts and wishlists of every owner, kept in Redis."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        limits: Limits,
        currency: str,
        event_log_max: int,
        idempotency_ttl_s: int,
        guest_ttl_s: int,
        customer_ttl_s: int,
        publish_command: Literal["PUBLISH", "SPUBLISH", ""] = "PUBLISH",
        observe: Callable[[str, float, bool], None] | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        outbox: OutboxConfig | None = None,
        history_s: float = 0.0,
        hints: OutboxHints | None = None,
        functions: bool = True,
    ) -> None:
        self._outbox = outbox or OutboxConfig()
        # On a Cluster the outbox must share each owner's slot: one partition per slot.
        self._partitions = SLOTS if isinstance(redis, RedisCluster) else self._outbox.partitions
        self._hints = hints
        self._wait = (wait_replicas, wait_timeout_ms) if wait_replicas else None
        self._observe = observe
        self.redis = redis
        self.limits = limits
        self._currency = currency
        # The log keeps its events for history_s (0: count cap only) and, every few revisions,
        # the state after one (restore.lua), so a restore replays from inside the log.
        self._history_s = history_s
        self._idem_ttl_ms = idempotency_ttl_s * 1000
        # redis-py encodes every str argument of every call; what stays the same for the
        # store's life is passed to the mutation script as bytes, encoded once.
        self._fixed = _Fixed(
            guest_ttl_ms=b"%d" % (guest_ttl_s * 1000),
            customer_ttl_ms=b"%d" % (customer_ttl_s * 1000),
            log_max=b"%d" % event_log_max,
            publish=publish_command.encode(),
            currency=currency.encode(),
            events=self._outbox.argument(False).encode(),
            guest_events=self._outbox.argument(True).encode(),
            snapshot_every=b"%d" % snapshot_every(event_log_max),
        )
        self._limits_json = _payload_enc.encode(
            {
                "max_lines": limits.max_lines,
                "max_qty": limits.max_qty,
                "max_wishlists": limits.max_wishlists,
                "max_wishlist_items": limits.max_wishlist_items,
            }
        )
        # Back-office events are written by the same script as the change (docs/events.md).
        # A Function library on Redis 7+; `functions=False` keeps to EVALSHA (as on Redis 6.2).
        self.scripts = StoreScripts(redis, functions=functions)

    async def ping(self) -> None:
        await self._guarded(self.redis.ping, call="ping")
        if self.scripts.functions is None:  # the first readiness check loads the library
            await self._guarded(self.scripts.prepare, call="ping")

    # Writes ------------------------------------------------------------------------------

    async def mutate(
        self, owner: Owner, op: str, payload: Mapping[str, Any], ctx: WriteContext
    ) -> Mutation:
        """Apply one change atomically, at most once per operation id."""
        if ctx.idempotency_key is not None:
            # Stored with the owner, and scoped to the caller: a shop back end and the
            # customer's phone choosing the same key never see each other's responses.
            caller = f"{ctx.actor.role}:{ctx.actor.id}"
            op_id, ttl_ms = f"k:{caller}:{ctx.idempotency_key}", self._idem_ttl_ms
        else:
            op_id, ttl_ms = "s:" + secrets.token_hex(16), SERVER_OP_TTL_MS
        # With CARTSYNC_REDIS_WAIT_REPLICAS, _run WAITs on the script's connection: that
        # narrows (does not close) the window in which a failover loses an acknowledged
        # change, answering once that many replicas have it or the timeout passed.
        return await self._run(owner, op, payload, ctx, op_id=op_id, op_ttl_ms=ttl_ms)

    async def erase(self, owner: Owner, actor: Actor) -> None:
        """Remove everything held for an owner (right to erasure)."""
        await self._run(owner, "erase", {}, WriteContext(actor), op_id="", op_ttl_ms=0)

    async def merge(
        self,
        customer: Owner,
        guest: Owner,
        strategy: merging.MergeStrategy,
        actor: Actor,
        reprice: Reprice | None = None,
    ) -> MergeReport:
        """Fold a guest's data into a customer's; safe to retry and to race with itself.

        The two owners live under different hash tags (different Cluster slots), so the merge is
        three atomic steps keyed by one merge id: claim (freezes the guest), apply (deduplicated by
        the merge id on the customer side), finish (erases the guest, leaves a tombstone).
        """
        system = WriteContext(actor)
        claimed = await self._run(
            guest,
            "merge_claim",
            {"customer": _digest(customer.id), "claim_ttl_ms": CLAIM_TTL_MS},
            system,
            op_id="",
            op_ttl_ms=0,
        )
        claim = _claim_dec.decode(claimed.body)
        if claim.state == "done":
            return MergeReport(await self.revision(customer), True, {})
        theirs = await _repriced(await self.snapshot(guest, "state"), reprice)
        summary: dict[str, int] = {}
        if theirs.cart.lines or any(w.items for w in theirs.wishlists):
            for _ in range(MERGE_ATTEMPTS):
                mine = await self.snapshot(customer, "state")
                outcome = merging.merge(
                    mine.cart.lines,
                    [w for w in mine.wishlists if w.created_at is not None],
                    theirs.cart.lines,
                    [w for w in theirs.wishlists if w.items],
                    strategy,
                    self.limits,
                    actor=actor,
                    now=now_iso(),
                )
                payload = {
                    "guest": guest.id,
                    "strategy": strategy.value,
                    "lines": [_planned_line(p) for p in outcome.lines],
                    "wishlists": [_planned_wishlist(p) for p in outcome.wishlists],
                }
                ctx = WriteContext(actor, expected_rev=mine.rev)
                try:
                    await self._run(
                        customer,
                        "merge_apply",
                        payload,
                        ctx,
                        op_id="m:" + claim.merge_id,
                        op_ttl_ms=self._idem_ttl_ms,
                    )
                except RevisionMismatch:
                    continue  # a device changed the cart meanwhile: plan again on fresh state
                summary = outcome.summary
                break
            else:
                raise Conflict("the cart kept changing during the merge; retry", code="cart_busy")
        await self._run(
            guest,
            "merge_finish",
            {"merge_id": claim.merge_id, "tombstone_ttl_ms": self._idem_ttl_ms},
            system,
            op_id="",
            op_ttl_ms=0,
        )
        return MergeReport(await self.revision(customer), False, summary)

    async def preview_merge(
        self,
        customer: Owner,
        guest: Owner,
        strategy: merging.MergeStrategy,
        actor: Actor,
        reprice: Reprice | None = None,
    ) -> MergePreview:
        """The merge's plan without claiming or writing anything (``dry_run``).

        Planned by the same pure ``merging.merge`` as the real merge, on a consistent read of
        each owner; the real merge plans again on the state it then finds, so a client compares
        ``rev`` with the revision it is shown later.
        """
        raw_claim = await self._guarded(
            lambda: self.redis.get(OwnerKeys(guest.id).merge_claim), call="read"
        )
        mine = await self.snapshot(customer, "state")
        if raw_claim is not None:
            claim = _claim_dec.decode(raw_claim)
            if claim.customer != _digest(customer.id):
                raise Conflict(
                    "this guest cart belongs to a merge into another account",
                    code="guest_merged_elsewhere",
                    field="guest_token",
                )
            if claim.state == "done":
                return MergePreview(mine.rev, mine.cart, mine.wishlists, True, {})
        theirs = await _repriced(await self.snapshot(guest, "state"), reprice)
        if not theirs.cart.lines and not any(w.items for w in theirs.wishlists):
            return MergePreview(mine.rev, mine.cart, mine.wishlists, False, {})
        now = now_iso()
        outcome = merging.merge(
            mine.cart.lines,
            [w for w in mine.wishlists if w.created_at is not None],
            theirs.cart.lines,
            [w for w in theirs.wishlists if w.items],
            strategy,
            self.limits,
            actor=actor,
            now=now,
        )
        planned = [p.wishlist for p in outcome.wishlists]
        ids = {w.id for w in planned}
        wishlists = planned + [w for w in mine.wishlists if w.id not in ids]
        cart = with_totals(
            msgspec.structs.replace(mine.cart, lines=[p.line for p in outcome.lines])
        )
        return MergePreview(mine.rev, cart, wishlists, False, outcome.summary)

    async def _run(
        self,
        owner: Owner,
        op: str,
        payload: Mapping[str, Any],
        ctx: WriteContext,
        *,
        op_id: str,
        op_ttl_ms: int,
    ) -> Mutation:
        fixed = self._fixed
        events = fixed.guest_events if owner.is_guest else fixed.events  # b'': none
        now_ms = time.time_ns() // 1_000_000
        args: list[str | bytes] = [
            op,
            op_id,
            ctx.fingerprint,
            str(op_ttl_ms),
            "" if ctx.expected_rev is None else str(ctx.expected_rev),
            iso_at(now_ms),
            str(now_ms),
            _actor_enc.encode(ctx.actor),
            fixed.guest_ttl_ms if owner.is_guest else fixed.customer_ttl_ms,
            fixed.log_max,
            fixed.publish,
            self._limits_json,
            _payload_enc.encode(payload),
            owner.id,
            secrets.token_hex(16),  # the id of a new cart, if this change starts one
            fixed.currency,
            events,
            history_cutoff(self._history_s, now_ms),
            fixed.snapshot_every,
        ]
        side = partition_of(owner.id, self._partitions)
        all_keys: list[str | bytes] = [
            *_encoded_keys(owner.id),
            side.outbox,
            side.deadlines,
            side.carts,
        ]
        wait = self._wait if op_id else None
        reply = await self._guarded(
            lambda: self.scripts.mutate(all_keys, args, wait=wait), call="mutate"
        )
        if events and self._hints is not None:
            self._hints.note(side.partition)
        status = int(reply[0])
        if status == 0:
            raise _refusal(reply)
        return Mutation(status, int(reply[1]), bytes(reply[2]), bool(int(reply[3])))

    # Reads -------------------------------------------------------------------------------

    async def revision(self, owner: Owner) -> int:
        raw = await self._guarded(
            lambda: self.redis.hget(OwnerKeys(owner.id).meta, "rev"), call="revision"
        )
        return int(raw or 0)

    async def snapshot(
        self, owner: Owner, mode: Literal["cart", "wishlists", "state", "all"] = "cart"
    ) -> Snapshot:
        """Cart, wishlists and (for 'all') the event log, read atomically."""
        return await self._snapshot(owner, [mode])

    async def history(self, owner: Owner, since: int, limit: int) -> Snapshot:
        """Events after revision ``since``; ``log_first`` tells how far back the log reaches."""
        return await self._snapshot(owner, ["history", str(since), str(limit)])

    async def _snapshot(self, owner: Owner, args: list[str]) -> Snapshot:
        keys = OwnerKeys(owner.id)
        read_keys = [keys.meta, keys.lines, keys.wishlists, keys.wish_items, keys.log]
        reply = await self._guarded(lambda: self.scripts.read(read_keys, args), call="read")
        raw_meta, raw_lines, raw_wl, raw_items, raw_events = reply
        meta = {
            bytes(raw_meta[i]).decode(): bytes(raw_meta[i + 1]).decode()
            for i in range(0, len(raw_meta), 2)
        }
        rev = int(meta.get("rev", 0))
        lines = sorted((_line_dec.decode(raw) for raw in raw_lines), key=lambda x: item_order(x.id))
        currency = meta.get("currency", self._currency)
        totals = cart_totals(lines, currency)
        cart = Cart(
            owner=owner.id,
            rev=rev,
            cart_id=meta.get("cart_id"),
            currency=currency,
            lines=lines,
            note=meta.get("note", ""),
            updated_at=meta.get("updated_at"),
            epoch=meta.get("epoch"),
            ready_for_collection=meta.get("collection") == "1",
            subtotal=totals.subtotal if totals else None,
            item_count=totals.item_count if totals else None,
            collection=stored_collection(meta.get("collection"), meta.get("pickup")),
        )
        with_lists = args[0] in ("wishlists", "state", "all")
        wishlists = _wishlists(raw_wl, raw_items) if with_lists else []
        events = [bytes(raw) for raw in raw_events]
        log_first = int(meta["log_first"]) if "log_first" in meta else None
        return Snapshot(rev, meta.get("epoch"), cart, wishlists, events, log_first)

    # Consent -----------------------------------------------------------------------------

    async def create_handoff(self, owner: Owner, ttl_s: int) -> str:
        """A fresh one-time code pointing at ``owner``; never reuses a live code."""
        for _ in range(10):
            code = new_code()

            async def reserve(code: str = code) -> bool:
                return bool(await self.redis.set(handoff_key(code), owner.id, nx=True, ex=ttl_s))

            if await self._guarded(reserve, call="handoff"):
                return code
        raise Conflict("could not allocate a hand-off code; retry", code="handoff_busy")

    async def take_handoff(self, code: str) -> str | None:
        """The owner behind a code, consuming it (GETDEL: a code works once)."""
        raw = await self._guarded(lambda: self.redis.getdel(handoff_key(code)), call="handoff")
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def put_grant(self, grant: Grant, ttl_s: int) -> None:
        data = _payload_enc.encode(grant)
        await self._guarded(
            lambda: self.redis.set(grant_key(grant.id), data, ex=max(1, int(ttl_s))), call="grant"
        )

    async def grant(self, grant_id: str) -> Grant | None:
        raw = await self._guarded(lambda: self.redis.get(grant_key(grant_id)), call="grant")
        return _grant_dec.decode(raw) if raw is not None else None

    async def drop_grant(self, grant_id: str) -> None:
        await self._guarded(lambda: self.redis.delete(grant_key(grant_id)), call="grant")

    async def grants(self, owner: Owner) -> list[Grant]:
        raw = await self._guarded(
            lambda: self.redis.hvals(OwnerKeys(owner.id).grants), call="grant"
        )
        return sorted((_grant_dec.decode(r) for r in raw), key=lambda g: g.created_at)

    async def _guarded(self, run: Callable[[], Awaitable[T]], call: str = "other") -> T:
        start = time.perf_counter()
        ok = False
        try:
            result = await run()
            ok = True
            return result
        except _STORE_DOWN as exc:
            raise StoreUnavailable("the cart store (Redis) is unreachable; retry shortly") from exc
        finally:
            if self._observe is not None:
                self._observe(call, time.perf_counter() - start, ok)


@dataclass(frozen=True)
class _Fixed:
    """The mutation script's arguments that never change, encoded."""

    guest_ttl_ms: bytes
    customer_ttl_ms: bytes
    log_max: bytes
    publish: bytes
    currency: bytes
    events: bytes
    guest_events: bytes
    snapshot_every: bytes


@functools.lru_cache(maxsize=4096)
def _encoded_keys(owner_id: str) -> tuple[bytes, ...]:
    """An owner's ``data_keys``, encoded (what redis-py would encode on every change): built
    once for the owners active lately (12 keys: ~7 µs to build, more to encode)."""
    return tuple(key.encode() for key in OwnerKeys(owner_id).data_keys())


def snapshot_every(event_log_max: int) -> int:
    """A state snapshot every this many revisions: at least four stay in a full log."""
    return max(1, min(50, event_log_max // 4))


def history_cutoff(history_s: float, now_ms: int) -> str:
    """The time before which events leave the log ('' keeps them: count cap only)."""
    if history_s <= 0:
        return ""
    return iso_at(now_ms - round(history_s * 1000))


def _digest(owner_id: str) -> str:
    """A guest's merge tombstone names its customer only by digest, so erasing the customer
    leaves nothing in the guest's keys that points back at them."""
    return hashlib.sha256(owner_id.encode()).hexdigest()[:32]


async def _repriced(snap: Snapshot, reprice: Reprice | None) -> Snapshot:
    if reprice is None or not snap.cart.lines:
        return snap
    cart = msgspec.structs.replace(snap.cart, lines=await reprice(snap.cart.lines))
    return replace(snap, cart=cart)


def _refusal(reply: list[Any]) -> CartsyncError:
    code = bytes(reply[2]).decode()
    message = bytes(reply[3]).decode()
    field = bytes(reply[4]).decode() or None
    if code == "revision_mismatch":
        return RevisionMismatch(int(reply[1]))
    if code == "idempotency_key_reused":
        return IdempotencyKeyReused(message, field=field)
    return _REFUSALS.get(code, Conflict)(message, code=code, field=field)


def _wishlists(raw_wl: list[bytes], raw_items: list[bytes]) -> list[Wishlist]:
    lists: dict[str, Wishlist] = {}
    for raw in raw_wl:
        s = _wishlist_dec.decode(raw)
        lists[s.id] = Wishlist(s.id, s.name, [], created_at=s.created_at, updated_at=s.updated_at)
    lists.setdefault("default", Wishlist(id="default", name="default", items=[]))
    for i in range(0, len(raw_items), 2):
        wishlist_id = bytes(raw_items[i]).decode().partition("/")[0]
        if wishlist_id in lists:
            lists[wishlist_id].items.append(_item_dec.decode(raw_items[i + 1]))
    for w in lists.values():
        w.items.sort(key=lambda item: item_order(item.id))

    def order(w: Wishlist) -> tuple[int, int]:
        return ({"default": 0, "saved": 1}.get(w.id, 2), item_order(w.id))

    return sorted(lists.values(), key=order)


def _planned_line(p: merging.PlannedLine) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(p.line)
    out["key"] = line_key(p.line.sku, p.line.attrs)
    if p.new:
        del out["id"]
    return out


def _planned_wishlist(p: merging.PlannedWishlist) -> dict[str, Any]:
    w = p.wishlist
    items = []
    for i, item in enumerate(w.items):
        entry: dict[str, Any] = msgspec.to_builtins(item)
        entry["key"] = line_key(item.sku, item.attrs)
        if i >= p.new_from:
            del entry["id"]
        items.append(entry)
    out: dict[str, Any] = {
        "name": w.name,
        "name_key": merging.wishlist_name_key(w.name),
        "items": items,
    }
    if not p.new or w.id in ("default", "saved"):
        out["id"] = w.id
    if w.created_at is not None and not p.new:
        out["created_at"] = w.created_at
    return out
