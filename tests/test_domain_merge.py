"""Merge policies (domain/merge.py): properties for arbitrary carts, and a table per strategy."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartsync.domain.events import SYSTEM_WISHLISTS
from cartsync.domain.limits import Limits
from cartsync.domain.merge import MergeOutcome, MergeStrategy, merge, wishlist_name_key
from cartsync.domain.model import Actor, Line, WishItem, Wishlist, line_key

T0 = "2024-01-01T00:00:00.000Z"
NOW = "2024-06-01T12:00:00.000Z"
CUSTOMER = Actor(role="customer", id="c1")
GUEST = Actor(role="guest", id="g1")

SKUS = ["A", "B", "C"]
ATTRS: list[dict[str, str]] = [
    {},
    {"size": "M"},
    {"size": "L"},
    {"size": "M", "color": "red"},
    {"color": "red", "size": "M"},  # the same line as the one above: key order never matters
]
NAMES = ["Gifts", " gifts", "GIFTS ", "Books", "books", "Trip", "Tools"]


# Builders ---------------------------------------------------------------------------------


def mk_line(
    line_id: str,
    sku: str,
    qty: int,
    attrs: dict[str, str] | None = None,
    *,
    by: Actor = CUSTOMER,
    title: str | None = None,
) -> Line:
    return Line(
        id=line_id,
        sku=sku,
        qty=qty,
        attrs=dict(attrs or {}),
        added_at=T0,
        updated_at=T0,
        updated_by=by,
        title=title,
    )


def mk_item(item_id: str, sku: str, attrs: dict[str, str] | None = None) -> WishItem:
    return WishItem(id=item_id, sku=sku, attrs=dict(attrs or {}), added_at=T0, added_by=CUSTOMER)


def mk_wishlist(
    wishlist_id: str, name: str, items: list[tuple[str, dict[str, str]]], prefix: str = "i"
) -> Wishlist:
    return Wishlist(
        id=wishlist_id,
        name=name,
        items=[mk_item(f"{prefix}{n + 1}", sku, attrs) for n, (sku, attrs) in enumerate(items)],
        created_at=T0,
        updated_at=T0,
    )


def key_of(x: Line | WishItem) -> str:
    return line_key(x.sku, x.attrs)


def group_of(w: Wishlist) -> str:
    """Which result wishlist a list folds into: system lists by id, the others by name."""
    return "#" + w.id if w.id in SYSTEM_WISHLISTS else wishlist_name_key(w.name)


def run(
    customer: list[Line],
    guest: list[Line],
    strategy: MergeStrategy,
    limits: Limits,
    customer_wl: list[Wishlist] | None = None,
    guest_wl: list[Wishlist] | None = None,
) -> MergeOutcome:
    return merge(
        customer,
        customer_wl or [],
        guest,
        guest_wl or [],
        strategy,
        limits,
        actor=CUSTOMER,
        now=NOW,
    )


# Strategies -------------------------------------------------------------------------------

limits_st = st.builds(
    Limits,
    max_lines=st.integers(1, 6),
    max_qty=st.sampled_from([1, 3, 10, 999]),
    max_wishlists=st.integers(2, 5),
    max_wishlist_items=st.integers(1, 4),
)


@st.composite
def line_lists(draw: st.DrawFn, max_size: int, max_qty: int, by: Actor) -> list[Line]:
    """A valid cart side: unique sku+attrs, ids L1.. (both sides count from 1, so ids collide)."""
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(SKUS), st.sampled_from(ATTRS), st.integers(1, max_qty)),
            max_size=max_size,
            unique_by=lambda r: line_key(r[0], r[1]),
        )
    )
    title = draw(st.sampled_from([None, "title"]))
    return [
        mk_line(f"L{n + 1}", sku, qty, attrs, by=by, title=title)
        for n, (sku, attrs, qty) in enumerate(rows)
    ]


@st.composite
def wishlist_sets(draw: st.DrawFn, limits: Limits, prefix: str) -> list[Wishlist]:
    """A valid owner's wishlists: system lists, then user lists with unique names (store order)."""
    system = draw(st.lists(st.sampled_from(sorted(SYSTEM_WISHLISTS)), unique=True))
    names = draw(
        st.lists(
            st.sampled_from(NAMES),
            unique_by=wishlist_name_key,
            max_size=limits.max_wishlists - len(SYSTEM_WISHLISTS),
        )
    )
    items = st.lists(
        st.tuples(st.sampled_from(SKUS), st.sampled_from(ATTRS)),
        max_size=limits.max_wishlist_items,
        unique_by=lambda r: line_key(r[0], r[1]),
    )
    lists = [mk_wishlist(s, s, draw(items), prefix) for s in sorted(system)]
    lists += [mk_wishlist(f"w{n + 1}", name, draw(items), prefix) for n, name in enumerate(names)]
    return lists


@dataclass
class Scenario:
    limits: Limits
    strategy: MergeStrategy
    customer: list[Line]
    guest: list[Line]
    customer_wl: list[Wishlist]
    guest_wl: list[Wishlist]


@st.composite
def scenarios(draw: st.DrawFn, *strategies: MergeStrategy) -> Scenario:
    limits = draw(limits_st)
    roomier = Limits(
        max_wishlists=limits.max_wishlists + 2, max_wishlist_items=limits.max_wishlist_items + 2
    )
    return Scenario(
        limits=limits,
        strategy=draw(st.sampled_from(strategies or list(MergeStrategy))),
        customer=draw(line_lists(limits.max_lines, limits.max_qty, CUSTOMER)),
        # A guest may have been stored under other limits: more lines, lists and items.
        guest=draw(line_lists(8, 999, GUEST)),
        customer_wl=draw(wishlist_sets(limits, "i")),
        guest_wl=draw(wishlist_sets(roomier, "i")),
    )


def outcome_of(s: Scenario) -> MergeOutcome:
    return run(s.customer, s.guest, s.strategy, s.limits, s.customer_wl, s.guest_wl)


def qty_by_key(lines: list[Line]) -> dict[str, int]:
    return {key_of(line): line.qty for line in lines}


# Line properties --------------------------------------------------------------------------


@given(scenarios())
def test_result_lines_are_unique_bounded_and_within_limits(s: Scenario) -> None:
    result = [p.line for p in outcome_of(s).lines]
    keys = [key_of(line) for line in result]
    assert len(keys) == len(set(keys))
    assert all(1 <= line.qty <= s.limits.max_qty for line in result)
    assert len(result) <= s.limits.max_lines


@given(scenarios())
def test_merge_leaves_its_inputs_alone(s: Scenario) -> None:
    before = copy.deepcopy((s.customer, s.guest, s.customer_wl, s.guest_wl))
    outcome_of(s)
    assert (s.customer, s.guest, s.customer_wl, s.guest_wl) == before


@given(scenarios(MergeStrategy.SUM, MergeStrategy.MAX))
def test_sum_and_max_combine_quantities_per_key(s: Scenario) -> None:
    out = outcome_of(s)
    mine, theirs = qty_by_key(s.customer), qty_by_key(s.guest)
    combine = (lambda a, b: a + b) if s.strategy is MergeStrategy.SUM else max
    for p in out.lines:
        key = key_of(p.line)
        wanted = combine(mine.get(key, 0), theirs.get(key, 0))
        assert p.line.qty == min(s.limits.max_qty, wanted), key


@given(scenarios(MergeStrategy.SUM, MergeStrategy.MAX))
def test_sum_and_max_never_drop_a_customer_line(s: Scenario) -> None:
    out = outcome_of(s)
    by_id = {p.line.id: p for p in out.lines if not p.new}
    assert [p.line.id for p in out.lines[: len(s.customer)]] == [c.id for c in s.customer]
    for line in s.customer:
        kept = by_id[line.id]
        assert key_of(kept.line) == key_of(line)
        assert kept.line.added_at == line.added_at
        if kept.line.qty == line.qty:
            assert kept.line == line  # untouched lines are not re-stamped
        else:
            assert (kept.line.updated_at, kept.line.updated_by) == (NOW, CUSTOMER)
    assert all(p.new for p in out.lines[len(s.customer) :])
    # A guest line is left out only when the cart is full.
    result_keys = {key_of(p.line) for p in out.lines}
    if any(key_of(g) not in result_keys for g in s.guest):
        assert len(out.lines) == s.limits.max_lines


@given(scenarios(MergeStrategy.REPLACE))
def test_replace_takes_the_guest_lines_when_there_are_any(s: Scenario) -> None:
    out = outcome_of(s)
    if s.guest:
        kept = s.guest[: s.limits.max_lines]
        assert [key_of(p.line) for p in out.lines] == [key_of(g) for g in kept]
        assert [p.line.qty for p in out.lines] == [min(g.qty, s.limits.max_qty) for g in kept]
        assert all(p.new for p in out.lines)
    else:
        assert [p.line for p in out.lines] == s.customer
        assert not any(p.new for p in out.lines)


@given(scenarios(MergeStrategy.KEEP))
def test_keep_keeps_the_customer_lines_when_there_are_any(s: Scenario) -> None:
    out = outcome_of(s)
    if s.customer:
        assert [p.line for p in out.lines] == s.customer
        assert not any(p.new for p in out.lines)
        assert (out.dropped_lines, out.capped_lines) == (0, 0)
    else:
        kept = s.guest[: s.limits.max_lines]
        assert [key_of(p.line) for p in out.lines] == [key_of(g) for g in kept]
        assert [p.line.qty for p in out.lines] == [min(g.qty, s.limits.max_qty) for g in kept]
        assert all(p.new for p in out.lines)


def contributing_keys(s: Scenario) -> set[str]:
    """The keys a strategy means to keep, before limits."""
    mine, theirs = {key_of(x) for x in s.customer}, {key_of(x) for x in s.guest}
    if s.strategy is MergeStrategy.REPLACE and theirs:
        return theirs
    if s.strategy is MergeStrategy.KEEP and mine:
        return mine
    return mine | theirs


@given(scenarios())
def test_every_line_is_kept_or_counted_as_dropped(s: Scenario) -> None:
    out = outcome_of(s)
    assert {key_of(p.line) for p in out.lines} <= contributing_keys(s)
    assert len(out.lines) + out.dropped_lines == len(contributing_keys(s))


@given(scenarios())
def test_capped_lines_counts_the_lines_that_hit_max_qty(s: Scenario) -> None:
    out = outcome_of(s)
    mine, theirs = qty_by_key(s.customer), qty_by_key(s.guest)
    capped = 0
    for p in out.lines:
        if not p.new and (s.strategy is MergeStrategy.KEEP or key_of(p.line) not in theirs):
            continue  # customer lines no guest line touched
        key = key_of(p.line)
        if s.strategy is MergeStrategy.SUM:
            wanted = mine.get(key, 0) + theirs[key]
        elif s.strategy is MergeStrategy.MAX:
            wanted = max(mine.get(key, 0), theirs[key])
        else:
            wanted = theirs[key]
        capped += wanted > s.limits.max_qty
    assert out.capped_lines == capped


# Wishlist properties ----------------------------------------------------------------------


@given(scenarios())
def test_wishlists_fold_by_name_without_duplicates_and_within_limits(s: Scenario) -> None:
    out = outcome_of(s)
    result = [p.wishlist for p in out.wishlists]
    groups = [group_of(w) for w in result]
    assert len(groups) == len(set(groups)), groups
    assert len(result) <= s.limits.max_wishlists
    user = [w for w in result if w.id not in SYSTEM_WISHLISTS]
    assert len(user) <= s.limits.max_wishlists - len(SYSTEM_WISHLISTS)
    for w in result:
        keys = [key_of(i) for i in w.items]
        assert len(keys) == len(set(keys)), w.name
        assert len(w.items) <= s.limits.max_wishlist_items


@given(scenarios())
def test_customer_wishlists_stay_and_take_guest_items_after_their_own(s: Scenario) -> None:
    out = outcome_of(s)
    assert [p.wishlist.id for p in out.wishlists[: len(s.customer_wl)]] == [
        w.id for w in s.customer_wl
    ]
    guest_by_group = {group_of(w): w for w in s.guest_wl}
    for mine, p in zip(s.customer_wl, out.wishlists, strict=False):
        assert not p.new
        assert p.wishlist.name == mine.name
        assert p.new_from == len(mine.items)
        assert p.wishlist.items[: len(mine.items)] == mine.items
        theirs = guest_by_group.get(group_of(mine))
        have = {key_of(i) for i in mine.items}
        extra = [i for i in (theirs.items if theirs else []) if key_of(i) not in have]
        room = s.limits.max_wishlist_items - len(mine.items)
        assert p.wishlist.items[len(mine.items) :] == extra[:room]
    for p in out.wishlists[len(s.customer_wl) :]:
        assert p.new
        theirs = guest_by_group[group_of(p.wishlist)]
        assert p.wishlist.items == theirs.items[: s.limits.max_wishlist_items]


@given(scenarios())
def test_every_wish_item_is_kept_or_counted_as_dropped(s: Scenario) -> None:
    out = outcome_of(s)
    distinct: dict[str, set[str]] = {}
    for w in [*s.customer_wl, *s.guest_wl]:
        distinct.setdefault(group_of(w), set()).update(key_of(i) for i in w.items)
    kept = sum(len(p.wishlist.items) for p in out.wishlists)
    assert kept + out.dropped_items == sum(len(keys) for keys in distinct.values())


@given(scenarios())
def test_a_guest_wishlist_is_left_out_only_when_no_room_is_left(s: Scenario) -> None:
    out = outcome_of(s)
    result = [p.wishlist for p in out.wishlists]
    present = {group_of(w) for w in result}
    user = sum(w.id not in SYSTEM_WISHLISTS for w in result)
    for w in s.guest_wl:
        if group_of(w) not in present:
            full = len(result) >= s.limits.max_wishlists
            no_user_room = user >= s.limits.max_wishlists - len(SYSTEM_WISHLISTS)
            assert full or (w.id not in SYSTEM_WISHLISTS and no_user_room), w.name


@given(scenarios())
def test_system_wishlists_match_by_id_never_by_name(s: Scenario) -> None:
    out = outcome_of(s)
    for p in out.wishlists:
        if p.wishlist.id in SYSTEM_WISHLISTS:
            assert p.wishlist.name == p.wishlist.id
    ids = Counter(p.wishlist.id for p in out.wishlists if p.wishlist.id in SYSTEM_WISHLISTS)
    assert all(n == 1 for n in ids.values())


# Tables -----------------------------------------------------------------------------------

Row = tuple[str, int, dict[str, str]]
MINE: list[Row] = [("A", 2, {}), ("B", 1, {"size": "M"})]
THEIRS: list[Row] = [("A", 3, {}), ("B", 1, {"size": "L"}), ("C", 5, {})]


def lines_of(rows: list[Row], by: Actor, prefix: str) -> list[Line]:
    return [mk_line(f"{prefix}{n + 1}", *row, by=by) for n, row in enumerate(rows)]


@pytest.mark.parametrize(
    ("strategy", "customer", "guest", "limits", "expected", "dropped", "capped"),
    [
        # expected: (sku, qty, attrs, id of the customer line it is, or "new")
        pytest.param(
            MergeStrategy.SUM,
            MINE,
            THEIRS,
            Limits(),
            [
                ("A", 5, {}, "c1"),
                ("B", 1, {"size": "M"}, "c2"),
                ("B", 1, {"size": "L"}, "new"),
                ("C", 5, {}, "new"),
            ],
            0,
            0,
            id="sum-adds-same-lines-appends-others",
        ),
        pytest.param(
            MergeStrategy.MAX,
            MINE,
            THEIRS,
            Limits(),
            [
                ("A", 3, {}, "c1"),
                ("B", 1, {"size": "M"}, "c2"),
                ("B", 1, {"size": "L"}, "new"),
                ("C", 5, {}, "new"),
            ],
            0,
            0,
            id="max-keeps-larger-qty",
        ),
        pytest.param(
            MergeStrategy.REPLACE,
            MINE,
            THEIRS,
            Limits(),
            [("A", 3, {}, "new"), ("B", 1, {"size": "L"}, "new"), ("C", 5, {}, "new")],
            0,
            0,
            id="replace-takes-guest-lines",
        ),
        pytest.param(
            MergeStrategy.KEEP,
            MINE,
            THEIRS,
            Limits(),
            [("A", 2, {}, "c1"), ("B", 1, {"size": "M"}, "c2")],
            0,
            0,
            id="keep-keeps-customer-lines",
        ),
        pytest.param(
            MergeStrategy.REPLACE,
            MINE,
            [],
            Limits(),
            [("A", 2, {}, "c1"), ("B", 1, {"size": "M"}, "c2")],
            0,
            0,
            id="replace-with-empty-guest-changes-nothing",
        ),
        pytest.param(
            MergeStrategy.KEEP,
            [],
            THEIRS,
            Limits(),
            [("A", 3, {}, "new"), ("B", 1, {"size": "L"}, "new"), ("C", 5, {}, "new")],
            0,
            0,
            id="keep-with-empty-customer-takes-guest-lines",
        ),
        pytest.param(
            MergeStrategy.SUM,
            [("A", 8, {})],
            [("A", 5, {})],
            Limits(max_qty=10),
            [("A", 10, {}, "c1")],
            0,
            1,
            id="sum-caps-at-max-qty",
        ),
        pytest.param(
            MergeStrategy.MAX,
            [("A", 5, {})],
            [("A", 2, {})],
            Limits(),
            [("A", 5, {}, "c1")],
            0,
            0,
            id="max-with-smaller-guest-qty-changes-nothing",
        ),
        pytest.param(
            MergeStrategy.REPLACE,
            [],
            [("A", 50, {})],
            Limits(max_qty=10),
            [("A", 10, {}, "new")],
            0,
            1,
            id="replace-caps-guest-qty",
        ),
        pytest.param(
            MergeStrategy.SUM,
            MINE,
            THEIRS,
            Limits(max_lines=3),
            [
                ("A", 5, {}, "c1"),
                ("B", 1, {"size": "M"}, "c2"),
                ("B", 1, {"size": "L"}, "new"),
            ],
            1,
            0,
            id="sum-drops-guest-lines-past-max-lines",
        ),
        pytest.param(
            MergeStrategy.SUM,
            [("A", 1, {"size": "M", "color": "red"})],
            [("A", 1, {"color": "red", "size": "M"})],
            Limits(),
            [("A", 2, {"size": "M", "color": "red"}, "c1")],
            0,
            0,
            id="attr-order-is-not-identity",
        ),
    ],
)
def test_line_merge_table(
    strategy: MergeStrategy,
    customer: list[Row],
    guest: list[Row],
    limits: Limits,
    expected: list[tuple[str, int, dict[str, str], str]],
    dropped: int,
    capped: int,
) -> None:
    out = run(lines_of(customer, CUSTOMER, "c"), lines_of(guest, GUEST, "g"), strategy, limits)
    got = [(p.line.sku, p.line.qty, p.line.attrs, "new" if p.new else p.line.id) for p in out.lines]
    assert got == expected
    assert (out.dropped_lines, out.capped_lines, out.dropped_items) == (dropped, capped, 0)


def test_sum_fills_a_missing_title_from_the_guest_line() -> None:
    out = run(
        [mk_line("c1", "A", 1)],
        [mk_line("g1", "A", 1, by=GUEST, title="Blue mug")],
        MergeStrategy.SUM,
        Limits(),
    )
    assert out.lines[0].line.title == "Blue mug"
    assert out.lines[0].line.id == "c1"


WL = tuple[str, str, list[tuple[str, dict[str, str]]]]  # id, name, items


@pytest.mark.parametrize(
    ("mine", "theirs", "limits", "expected", "dropped"),
    [
        pytest.param(
            [("w1", "Gifts", [("A", {})])],
            [("w1", " gifts ", [("A", {}), ("B", {})])],
            Limits(),
            [("w1", "Gifts", ["A", "B"])],
            0,
            id="same-name-any-case-folds-without-duplicates",
        ),
        pytest.param(
            [("w1", "Gifts", [("A", {})])],
            [("w1", "Books", [("B", {})])],
            Limits(),
            [("w1", "Gifts", ["A"]), ("w1", "Books", ["B"])],
            0,
            id="same-id-other-name-stays-apart",
        ),
        pytest.param(
            [("default", "default", [("A", {})])],
            [("default", "default", [("B", {})]), ("saved", "saved", [("C", {})])],
            Limits(),
            [("default", "default", ["A", "B"]), ("saved", "saved", ["C"])],
            0,
            id="system-lists-fold-by-id",
        ),
        pytest.param(
            [("w1", "Gifts", [("A", {}), ("B", {}), ("C", {})])],
            [("w3", "gifts", [("D", {}), ("A", {}), ("E", {}), ("F", {})])],
            Limits(max_wishlist_items=5),
            [("w1", "Gifts", ["A", "B", "C", "D", "E"])],
            1,
            id="items-past-the-cap-are-counted",
        ),
        pytest.param(
            [("w1", "Gifts", []), ("w2", "Books", [])],
            [("w1", "Trip", [("A", {}), ("B", {})]), ("saved", "saved", [("C", {})])],
            Limits(max_wishlists=4),
            [("w1", "Gifts", []), ("w2", "Books", []), ("saved", "saved", ["C"])],
            2,
            id="a-list-past-max-wishlists-drops-its-items",
        ),
    ],
)
def test_wishlist_merge_table(
    mine: list[WL], theirs: list[WL], limits: Limits, expected: list[Any], dropped: int
) -> None:
    out = run(
        [],
        [],
        MergeStrategy.SUM,
        limits,
        [mk_wishlist(*w, prefix="i") for w in mine],
        [mk_wishlist(*w, prefix="j") for w in theirs],
    )
    got = [
        (p.wishlist.id, p.wishlist.name, [i.sku for i in p.wishlist.items]) for p in out.wishlists
    ]
    assert got == expected
    assert out.dropped_items == dropped
