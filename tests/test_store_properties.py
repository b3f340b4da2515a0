"""The real store (Lua over Redis) against a plain Python model, driven by Hypothesis.

Every rule predicts from the model whether the change succeeds or which error it gets, runs it on
the store, and checks the two agree; after every step the whole owner is read back atomically and
compared: lines, wishlists, revision, and the event log (one event per revision, in order).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from cartsync.domain import events as ev
from cartsync.domain.merge import wishlist_name_key
from cartsync.domain.model import Actor, attrs_key, line_key
from cartsync.domain.principal import Owner, Role
from cartsync.errors import CartsyncError, IdempotencyKeyReused
from cartsync.settings import Settings
from cartsync.storage.connection import connect
from cartsync.storage.keys import OwnerKeys
from cartsync.storage.store import Mutation, Snapshot, WriteContext
from tests.support.cart_store import cart_store
from tests.support.processes import RedisProcess

T = TypeVar("T")

MAX_LINES, MAX_QTY, MAX_WISHLISTS, MAX_ITEMS = 4, 20, 4, 3
CUSTOMER_TTL_MS = 90 * 86_400_000
SYSTEM = ("default", "saved")

SKUS = st.sampled_from(["A", "B", "C"])
ATTRS = st.sampled_from(
    [
        {},
        {"size": "M"},
        {"size": "M", "color": "red"},
        {"color": "red", "size": "M"},  # the same variant as above: key order is no identity
    ]
)
QTY = st.integers(1, MAX_QTY + 5)
PICK = st.integers(0, 7)
BOGUS = st.sampled_from([False, False, False, True])  # mostly real ids
NAMES = st.sampled_from(["Gifts", " gifts ", "Books", "Trip", "Default", "SAVED"])
NOTES = st.sampled_from(["", "leave at the door", "gift wrap"])


@dataclass
class MLine:
    id: str
    sku: str
    attrs: dict[str, str]
    qty: int

    @property
    def key(self) -> str:
        return line_key(self.sku, self.attrs)


@dataclass
class MItem:
    id: str
    sku: str
    attrs: dict[str, str]

    @property
    def key(self) -> str:
        return line_key(self.sku, self.attrs)


@dataclass
class MList:
    id: str
    name: str
    items: dict[str, MItem] = field(default_factory=dict)

    def item_with(self, key: str) -> MItem | None:
        return next((i for i in self.items.values() if i.key == key), None)


class Refused(Exception):
    """What the model expects the store to refuse with: the error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def seq_of(some_id: str) -> int:
    return int(some_id[1:])


@settings(max_examples=100, stateful_step_count=40, deadline=None)
class CartStoreMachine(RuleBasedStateMachine):
    """One fresh customer per example; the store and the model must never disagree."""

    def __init__(self, redis_url: str, *, functions: bool = True) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        app_settings = Settings.from_env(
            {
                "CARTSYNC_REDIS_URL": redis_url,
                "CARTSYNC_DATA_DIR": "/nonexistent",
                "CARTSYNC_MAX_LINES": str(MAX_LINES),
                "CARTSYNC_MAX_QTY": str(MAX_QTY),
                "CARTSYNC_MAX_WISHLISTS": str(MAX_WISHLISTS),
                "CARTSYNC_MAX_WISHLIST_ITEMS": str(MAX_ITEMS),
            }
        )
        self.redis = connect(app_settings)
        self.store = cart_store(self.redis, app_settings, functions=functions)
        self.owner = Owner(Role.CUSTOMER, f"prop-{uuid.uuid4().hex}")
        self.actor = Actor(role="customer", id=self.owner.subject, device="prop")
        # The model.
        self.rev = 0
        self.seq = 0
        self.lines: dict[str, MLine] = {}
        self.note = ""
        self.wishlists: dict[str, MList] = {}
        self.events: list[str] = []
        self.cart_id: str | None = None
        self.checked_out_to: str | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.redis.aclose())
        finally:
            self.loop.close()

    # Model helpers -------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq}"

    def pick_line(self, pick: int, bogus: bool) -> str:
        if bogus or not self.lines:
            return "L999"
        ids = list(self.lines)
        return ids[pick % len(ids)]

    def pick_wishlist(self, pick: int, bogus: bool) -> str:
        if bogus:
            return "w999"
        ids = [*SYSTEM, *(i for i in self.wishlists if i not in SYSTEM)]
        return ids[pick % len(ids)]

    def pick_item(self, wishlist_id: str, pick: int, bogus: bool) -> str:
        w = self.wishlists.get(wishlist_id)
        if bogus or w is None or not w.items:
            return "i999"
        ids = list(w.items)
        return ids[pick % len(ids)]

    def line_with(self, key: str) -> MLine | None:
        return next((line for line in self.lines.values() if line.key == key), None)

    def visible_list(self, wishlist_id: str) -> MList | None:
        """The list as a reader sees it: 'default' always, 'saved' once used, the user's lists."""
        w = self.wishlists.get(wishlist_id)
        if w is None and wishlist_id in SYSTEM:
            return MList(wishlist_id, wishlist_id)
        return w

    def used_list(self, wishlist_id: str) -> MList:
        """A system list is stored on first use."""
        return self.wishlists.setdefault(wishlist_id, MList(wishlist_id, wishlist_id))

    def name_taken(self, name_key: str, except_id: str | None = None) -> bool:
        if name_key in SYSTEM:
            return True
        return any(
            wishlist_name_key(w.name) == name_key and w.id != except_id
            for w in self.wishlists.values()
            if w.id not in SYSTEM
        )

    def plan_add(self, key: str, qty: int) -> MLine | None:
        """What adding ``qty`` of ``key`` to the cart does: the line it adds to, or a refusal."""
        existing = self.line_with(key)
        if existing is not None:
            if existing.qty + qty > MAX_QTY:
                raise Refused("limit_exceeded")
            return existing
        if len(self.lines) >= MAX_LINES:
            raise Refused("limit_exceeded")
        if qty > MAX_QTY:  # a new line may not start above max_qty either
            raise Refused("limit_exceeded")
        return None

    def do_add(self, existing: MLine | None, sku: str, attrs: dict[str, str], qty: int) -> MLine:
        if existing is not None:
            existing.qty += qty
            return existing
        line = MLine(self.new_id("L"), sku, dict(attrs), qty)
        self.lines[line.id] = line
        return line

    # Running one operation against both --------------------------------------------------

    def mutate(
        self, op: str, payload: dict[str, Any], ctx: WriteContext | None = None
    ) -> Mutation | CartsyncError:
        try:
            return self.run(
                self.store.mutate(self.owner, op, payload, ctx or WriteContext(self.actor))
            )
        except CartsyncError as exc:
            return exc

    def expect(
        self,
        op: str,
        payload: dict[str, Any],
        plan: Any,
        *,
        status: int = 200,
        ctx: WriteContext | None = None,
    ) -> tuple[Mutation | None, Any]:
        """Run ``op``; ``plan()`` changes the model and returns (event type or None, result).

        A refusal returns (None, its code); ``plan()`` raises ``Refused`` before changing anything.
        """
        refusal: Refused | None = None
        try:
            event_type, result = plan()
        except Refused as exc:
            refusal = exc
        got = self.mutate(op, payload, ctx)
        if refusal is not None:
            event(f"{op}: {refusal.code}")
            assert isinstance(got, CartsyncError), f"{op} {payload}: expected {refusal.code}"
            assert got.code == refusal.code, f"{op} {payload}: {got.code} != {refusal.code}"
            return None, refusal.code
        event(f"{op}: {'no-op' if event_type is None else 'ok'}")
        assert isinstance(got, Mutation), f"{op} {payload}: refused with {got.code}: {got}"
        assert not got.replayed
        assert got.status == status, (op, got.status, status)
        if event_type is None:  # a no-op: no revision is spent
            assert got.rev == self.rev
        else:
            assert got.rev == self.rev + 1, "every change bumps the revision by one"
            self.rev += 1
            self.events.append(event_type)
        assert json.loads(got.body)["rev"] == got.rev
        return got, result

    # Rules: cart ---------------------------------------------------------------------------

    @initialize()
    def starts_empty(self) -> None:
        snap = self.snapshot()
        assert (snap.rev, snap.cart.lines, snap.events) == (0, [], [])

    @rule(sku=SKUS, attrs=ATTRS, qty=QTY)
    def add_line(self, sku: str, attrs: dict[str, str], qty: int) -> None:
        key = line_key(sku, attrs)
        existing = self.line_with(key)
        payload = {"sku": sku, "qty": qty, "attrs": attrs, "key": key}

        def plan() -> tuple[str, MLine]:
            line = self.do_add(self.plan_add(key, qty), sku, attrs, qty)
            return (ev.LINE_UPDATED if existing else ev.LINE_ADDED), line

        got, line = self.expect(
            "line_add", payload, plan, status=200 if existing is not None else 201
        )
        if got is not None:
            body = json.loads(got.body)["line"]
            assert (body["id"], body["qty"]) == (line.id, line.qty)

    @rule(
        pick=PICK,
        bogus=BOGUS,
        qty=st.none() | st.integers(0, MAX_QTY + 5),
        attrs=st.none() | ATTRS,
    )
    def patch_line(
        self, pick: int, bogus: bool, qty: int | None, attrs: dict[str, str] | None
    ) -> None:
        if qty is None and attrs is None:
            qty = 1
        line_id = self.pick_line(pick, bogus)
        payload: dict[str, Any] = {"line_id": line_id}
        if qty is not None:
            payload["qty"] = qty
        if attrs is not None:
            payload["attrs"] = attrs
            payload["attrs_key"] = attrs_key(attrs)

        def plan() -> tuple[str, None]:
            line = self.lines.get(line_id)
            if line is None:
                raise Refused("line_not_found")
            if qty == 0:
                del self.lines[line_id]
                return ev.LINE_REMOVED, None
            if qty is not None and qty > MAX_QTY:
                raise Refused("limit_exceeded")
            if attrs is not None:
                other = self.line_with(line_key(line.sku, attrs))
                if other is not None and other is not line:
                    raise Refused("line_conflict")
                if other is None:
                    line.attrs = dict(attrs)
            if qty is not None:
                line.qty = qty
            return ev.LINE_UPDATED, None

        self.expect("line_update", payload, plan)

    @rule(pick=PICK, bogus=BOGUS)
    def remove_line(self, pick: int, bogus: bool) -> None:
        line_id = self.pick_line(pick, bogus)

        def plan() -> tuple[str, None]:
            if self.lines.pop(line_id, None) is None:
                raise Refused("line_not_found")
            return ev.LINE_REMOVED, None

        self.expect("line_remove", {"line_id": line_id}, plan)

    @rule()
    def clear_cart(self) -> None:
        def plan() -> tuple[str, None]:
            self.lines.clear()
            return ev.CART_CLEARED, None

        self.expect("cart_clear", {}, plan)

    @rule(note=NOTES)
    def set_note(self, note: str) -> None:
        def plan() -> tuple[str, None]:
            self.note = note
            return ev.CART_NOTE_SET, None

        self.expect("note_set", {"note": note}, plan)

    @rule(pick=PICK, bogus=BOGUS)
    def save_for_later(self, pick: int, bogus: bool) -> None:
        line_id = self.pick_line(pick, bogus)

        def plan() -> tuple[str, MItem]:
            line = self.lines.get(line_id)
            if line is None:
                raise Refused("line_not_found")
            saved = self.visible_list("saved")
            assert saved is not None
            item = saved.item_with(line.key)
            if item is None and len(saved.items) >= MAX_ITEMS:
                raise Refused("limit_exceeded")
            del self.lines[line_id]
            saved = self.used_list("saved")
            if item is None:
                item = MItem(self.new_id("i"), line.sku, dict(line.attrs))
                saved.items[item.id] = item
            return ev.LINE_SAVED_FOR_LATER, item

        got, item = self.expect("line_save_for_later", {"line_id": line_id}, plan)
        if got is not None:
            body = json.loads(got.body)
            assert (body["wishlist_id"], body["item"]["id"]) == ("saved", item.id)

    @rule()
    def checkout(self) -> None:
        before = [(line.id, line.qty) for line in self.lines.values()]

        def plan() -> tuple[str, None]:
            if not self.lines:
                raise Refused("cart_empty")
            self.lines.clear()
            self.note = ""
            return ev.CART_CHECKED_OUT, None

        got, _ = self.expect("checkout", {}, plan)
        if got is not None:
            body = json.loads(got.body)
            assert [(x["id"], x["qty"]) for x in body["checkout"]["lines"]] == before
            assert body["checkout"]["cart_id"] == self.cart_id
            assert body["cart_id"] != self.cart_id
            self.checked_out_to = body["cart_id"]

    # Rules: wishlists ----------------------------------------------------------------------

    @rule(name=NAMES)
    def create_wishlist(self, name: str) -> None:
        name = name.strip()
        name_key = wishlist_name_key(name)

        def plan() -> tuple[str, MList]:
            if sum(i not in SYSTEM for i in self.wishlists) >= MAX_WISHLISTS - len(SYSTEM):
                raise Refused("limit_exceeded")
            if self.name_taken(name_key):
                raise Refused("wishlist_name_taken")
            w = MList(self.new_id("w"), name)
            self.wishlists[w.id] = w
            return ev.WISHLIST_CREATED, w

        got, w = self.expect(
            "wishlist_create", {"name": name, "name_key": name_key}, plan, status=201
        )
        if got is not None:
            assert json.loads(got.body)["wishlist"]["id"] == w.id

    @rule(pick=PICK, bogus=BOGUS, name=NAMES)
    def rename_wishlist(self, pick: int, bogus: bool, name: str) -> None:
        wishlist_id = self.pick_wishlist(pick, bogus)
        name = name.strip()
        name_key = wishlist_name_key(name)

        def plan() -> tuple[str, None]:
            if wishlist_id in SYSTEM:
                raise Refused("wishlist_protected")
            w = self.wishlists.get(wishlist_id)
            if w is None:
                raise Refused("wishlist_not_found")
            if self.name_taken(name_key, except_id=wishlist_id):
                raise Refused("wishlist_name_taken")
            w.name = name
            return ev.WISHLIST_RENAMED, None

        payload = {"wishlist_id": wishlist_id, "name": name, "name_key": name_key}
        self.expect("wishlist_rename", payload, plan)

    @rule(pick=PICK, bogus=BOGUS)
    def delete_wishlist(self, pick: int, bogus: bool) -> None:
        wishlist_id = self.pick_wishlist(pick, bogus)

        def plan() -> tuple[str, None]:
            if wishlist_id in SYSTEM:
                raise Refused("wishlist_protected")
            if self.wishlists.pop(wishlist_id, None) is None:
                raise Refused("wishlist_not_found")
            return ev.WISHLIST_DELETED, None

        self.expect("wishlist_delete", {"wishlist_id": wishlist_id}, plan)

    @rule(pick=PICK, bogus=BOGUS, sku=SKUS, attrs=ATTRS)
    def add_item(self, pick: int, bogus: bool, sku: str, attrs: dict[str, str]) -> None:
        wishlist_id = self.pick_wishlist(pick, bogus)
        key = line_key(sku, attrs)
        w = self.visible_list(wishlist_id)
        existing = w.item_with(key) if w is not None else None
        payload = {"wishlist_id": wishlist_id, "sku": sku, "attrs": attrs, "key": key}

        def plan() -> tuple[str | None, MItem]:
            if w is None:
                raise Refused("wishlist_not_found")
            if existing is not None:
                return None, existing  # already listed: 200, nothing changes
            if len(w.items) >= MAX_ITEMS:
                raise Refused("limit_exceeded")
            item = MItem(self.new_id("i"), sku, dict(attrs))
            self.used_list(wishlist_id).items[item.id] = item
            return ev.WISHLIST_ITEM_ADDED, item

        got, item = self.expect(
            "item_add", payload, plan, status=200 if existing is not None else 201
        )
        if got is not None:
            body = json.loads(got.body)
            assert (body["item"]["id"], body["created"]) == (item.id, existing is None)

    @rule(pick=PICK, bogus=BOGUS, item_pick=PICK, item_bogus=BOGUS)
    def remove_item(self, pick: int, bogus: bool, item_pick: int, item_bogus: bool) -> None:
        wishlist_id = self.pick_wishlist(pick, bogus)
        item_id = self.pick_item(wishlist_id, item_pick, item_bogus)

        def plan() -> tuple[str, None]:
            w = self.visible_list(wishlist_id)
            if w is None:
                raise Refused("wishlist_not_found")
            if w.items.pop(item_id, None) is None:
                raise Refused("item_not_found")
            return ev.WISHLIST_ITEM_REMOVED, None

        self.expect("item_remove", {"wishlist_id": wishlist_id, "item_id": item_id}, plan)

    @rule(pick=PICK, bogus=BOGUS, item_pick=PICK, item_bogus=BOGUS, qty=QTY)
    def move_to_cart(
        self, pick: int, bogus: bool, item_pick: int, item_bogus: bool, qty: int
    ) -> None:
        wishlist_id = self.pick_wishlist(pick, bogus)
        item_id = self.pick_item(wishlist_id, item_pick, item_bogus)

        def plan() -> tuple[str, MLine]:
            w = self.visible_list(wishlist_id)
            if w is None:
                raise Refused("wishlist_not_found")
            item = w.items.get(item_id)
            if item is None:
                raise Refused("item_not_found")
            existing = self.plan_add(item.key, qty)
            del w.items[item_id]
            return ev.WISHLIST_ITEM_MOVED_TO_CART, self.do_add(existing, item.sku, item.attrs, qty)

        payload = {"wishlist_id": wishlist_id, "item_id": item_id, "qty": qty}
        got, line = self.expect("item_move_to_cart", payload, plan)
        if got is not None:
            body = json.loads(got.body)["line"]
            assert (body["id"], body["qty"]) == (line.id, line.qty)

    # Rules: retries ------------------------------------------------------------------------

    @rule(
        which=st.sampled_from(["line", "note", "item"]),
        sku=SKUS,
        attrs=ATTRS,
        qty=QTY,
        note=NOTES,
    )
    def retry_with_idempotency_key(
        self, which: str, sku: str, attrs: dict[str, str], qty: int, note: str
    ) -> None:
        """The same key and request twice: the second answer is the first one, replayed."""
        key = line_key(sku, attrs)
        if which == "line":
            op, payload = "line_add", {"sku": sku, "qty": qty, "attrs": attrs, "key": key}
        elif which == "note":
            op, payload = "note_set", {"note": note}
        else:
            op = "item_add"
            payload = {"wishlist_id": "default", "sku": sku, "attrs": attrs, "key": key}
        ctx = WriteContext(
            self.actor,
            idempotency_key=f"retry-{uuid.uuid4().hex}",
            fingerprint=json.dumps([op, payload], sort_keys=True),
        )
        rev_before = self.rev
        if which == "line":
            existing = self.line_with(key)
            first, outcome = self.expect(
                op,
                payload,
                lambda: (
                    ev.LINE_UPDATED if existing else ev.LINE_ADDED,
                    self.do_add(self.plan_add(key, qty), sku, attrs, qty),
                ),
                status=200 if existing else 201,
                ctx=ctx,
            )
        elif which == "note":

            def set_it() -> tuple[str, None]:
                self.note = note
                return ev.CART_NOTE_SET, None

            first, outcome = self.expect(op, payload, set_it, ctx=ctx)
        else:
            default = self.visible_list("default")
            assert default is not None
            listed = default.item_with(key)

            def add_it() -> tuple[str | None, None]:
                if listed is not None:
                    return None, None
                if len(default.items) >= MAX_ITEMS:
                    raise Refused("limit_exceeded")
                item = MItem(self.new_id("i"), sku, dict(attrs))
                self.used_list("default").items[item.id] = item
                return ev.WISHLIST_ITEM_ADDED, None

            first, outcome = self.expect(
                op, payload, add_it, status=200 if listed is not None else 201, ctx=ctx
            )
        again = self.mutate(op, payload, ctx)
        if first is None:
            # A refusal is not recorded: the retry is judged afresh, on the same state.
            assert isinstance(again, CartsyncError), again
            assert again.code == outcome
            assert self.rev == rev_before
            return
        assert isinstance(again, Mutation), again
        assert again.replayed
        assert (again.status, again.rev, again.body) == (first.status, first.rev, first.body)
        other = WriteContext(self.actor, idempotency_key=ctx.idempotency_key, fingerprint="other")
        reused = self.mutate("note_set", {"note": "something else"}, other)
        assert isinstance(reused, IdempotencyKeyReused), reused

    # Invariants ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self.run(self.store.snapshot(self.owner, "all"))

    @invariant()
    def store_matches_model(self) -> None:
        snap = self.snapshot()
        lines = snap.cart.lines

        assert all(1 <= line.qty <= MAX_QTY for line in lines), [x.qty for x in lines]
        keys = [line_key(line.sku, line.attrs) for line in lines]
        assert len(keys) == len(set(keys)), "two lines with the same sku and attrs"
        assert len(lines) <= MAX_LINES
        assert len(snap.wishlists) <= MAX_WISHLISTS
        for w in snap.wishlists:
            item_keys = [line_key(i.sku, i.attrs) for i in w.items]
            assert len(item_keys) == len(set(item_keys)), w.id
            assert len(w.items) <= MAX_ITEMS, w.id

        assert snap.rev == self.rev
        assert [e.rev for e in snap.events] == list(range(1, self.rev + 1))
        assert [e.type for e in snap.events] == self.events
        assert all(e.actor == self.actor for e in snap.events)

        assert [(x.id, x.sku, x.attrs, x.qty) for x in lines] == [
            (x.id, x.sku, x.attrs, x.qty) for x in self.lines.values()
        ]
        assert snap.cart.note == self.note
        expected_lists = [self.visible_list("default")]
        if "saved" in self.wishlists:
            expected_lists.append(self.wishlists["saved"])
        expected_lists += sorted(
            (w for w in self.wishlists.values() if w.id not in SYSTEM), key=lambda w: seq_of(w.id)
        )
        assert [
            (w.id, w.name, [(i.id, i.sku, i.attrs) for i in w.items]) for w in snap.wishlists
        ] == [
            (w.id, w.name, [(i.id, i.sku, i.attrs) for i in w.items.values()])
            for w in expected_lists
            if w is not None
        ]

        # The cart id is made by the first change and replaced by each checkout, only then.
        if self.rev == 0:
            assert snap.cart.cart_id is None
        elif self.checked_out_to is not None:
            assert snap.cart.cart_id == self.checked_out_to
            self.checked_out_to = None
        elif self.cart_id is not None:
            assert snap.cart.cart_id == self.cart_id
        self.cart_id = snap.cart.cart_id

    @invariant()
    def every_key_expires_with_the_others(self) -> None:
        """Lifetimes are renewed only when due (prelude.lua): a key a change creates in between
        (a line index after a checkout, a wishlist, an idempotency record) gets the lifetime the
        others have left, never none."""
        keys = OwnerKeys(self.owner.id)
        names = [k for k in keys.data_keys() if k not in (keys.channel, keys.merge_claim)]

        async def lifetimes() -> list[int]:
            async with self.redis.pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.pttl(name)
                return [int(x) for x in await pipe.execute()]

        # -2: no such key (a cart without lines has no line hash).
        left = {n: ms for n, ms in zip(names, self.run(lifetimes()), strict=True) if ms != -2}
        if self.rev == 0:
            return
        assert left, "a changed owner has keys"
        assert all(0 < ms <= CUSTOMER_TTL_MS for ms in left.values()), left
        assert max(left.values()) - min(left.values()) < 2000, left


def test_store_agrees_with_the_model(redis_server: RedisProcess) -> None:
    run_state_machine_as_test(
        lambda: CartStoreMachine(redis_server.url),
        settings=CartStoreMachine.TestCase.settings,
    )


def test_the_evalsha_fallback_agrees_with_the_model(redis_server: RedisProcess) -> None:
    """The same Lua sent by EVALSHA, as on Redis 6.2 (no Functions)."""
    run_state_machine_as_test(
        lambda: CartStoreMachine(redis_server.url, functions=False),
        settings=CartStoreMachine.TestCase.settings,
    )
