"""Merge policies: how a guest's cart and wishlists fold into a customer's at sign-in.

The strategies follow what commerce platforms taught shoppers to expect (commercetools'
MergeWithExistingCustomerCart and UseAsNewActiveCustomerCart):

- ``sum``: lines with the same sku and attrs add up; other guest lines are appended.
- ``max``: lines with the same sku and attrs keep the larger quantity.
- ``replace``: the guest's lines become the cart (a guest with no lines replaces nothing).
- ``keep``: the customer's lines stay (a customer with no lines takes the guest's).

Wishlists always fold together by name, without duplicate items. Nothing is ever lost silently:
what a limit forced out is counted in the outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from cartsync.domain.events import SYSTEM_WISHLISTS
from cartsync.domain.limits import Limits
from cartsync.domain.model import Actor, Line, WishItem, Wishlist, line_key


class MergeStrategy(enum.StrEnum):
    SUM = "sum"
    MAX = "max"
    REPLACE = "replace"
    KEEP = "keep"


@dataclass
class PlannedLine:
    """A line of the merged cart; ``new`` lines get a fresh id when stored."""

    line: Line
    new: bool


@dataclass
class PlannedWishlist:
    """A wishlist of the merged result; items from ``new_from`` on came from the guest."""

    wishlist: Wishlist
    new: bool
    new_from: int = 0


@dataclass
class MergeOutcome:
    lines: list[PlannedLine]
    wishlists: list[PlannedWishlist]
    dropped_lines: int = 0
    capped_lines: int = 0
    dropped_items: int = 0

    @property
    def summary(self) -> dict[str, int]:
        return {
            "dropped_lines": self.dropped_lines,
            "capped_lines": self.capped_lines,
            "dropped_items": self.dropped_items,
        }


def wishlist_name_key(name: str) -> str:
    """Wishlist names are unique per owner regardless of case and surrounding space."""
    return name.strip().casefold()


def merge(
    customer_lines: list[Line],
    customer_wishlists: list[Wishlist],
    guest_lines: list[Line],
    guest_wishlists: list[Wishlist],
    strategy: MergeStrategy,
    limits: Limits,
    *,
    actor: Actor,
    now: str,
) -> MergeOutcome:
    """Fold a guest's data into a customer's; pure, so every strategy is testable on its own."""
    outcome = MergeOutcome(lines=[], wishlists=[])
    _merge_lines(outcome, customer_lines, guest_lines, strategy, limits, actor, now)
    _merge_wishlists(outcome, customer_wishlists, guest_wishlists, limits)
    return outcome


def _merge_lines(
    outcome: MergeOutcome,
    mine: list[Line],
    theirs: list[Line],
    strategy: MergeStrategy,
    limits: Limits,
    actor: Actor,
    now: str,
) -> None:
    if strategy is MergeStrategy.REPLACE and theirs:
        base: list[Line] = []
    elif strategy is MergeStrategy.KEEP and mine:
        theirs = []
        base = mine
    else:
        base = mine
    planned = [PlannedLine(msgspec.structs.replace(line), new=False) for line in base]
    by_key = {line_key(p.line.sku, p.line.attrs): p for p in planned}
    for line in theirs:
        key = line_key(line.sku, line.attrs)
        hit = by_key.get(key)
        if hit is None:
            if len(planned) >= limits.max_lines:
                outcome.dropped_lines += 1
                continue
            qty = min(line.qty, limits.max_qty)
            if qty < line.qty:
                outcome.capped_lines += 1
            entry = PlannedLine(msgspec.structs.replace(line, qty=qty), new=True)
            planned.append(entry)
            by_key[key] = entry
            continue
        wanted = (
            hit.line.qty + line.qty
            if strategy is MergeStrategy.SUM
            else max(hit.line.qty, line.qty)
        )
        qty = min(wanted, limits.max_qty)
        if qty < wanted:
            outcome.capped_lines += 1
        if qty != hit.line.qty:
            # The price travels with who set it: the customer's line keeps its own, or takes
            # the guest's whole pricing (currency, image, priced_by) when it has none.
            priced = hit.line if hit.line.unit_price is not None else line
            hit.line = msgspec.structs.replace(
                hit.line,
                qty=qty,
                title=hit.line.title or line.title,
                unit_price=priced.unit_price,
                currency=priced.currency,
                image=priced.image or hit.line.image,
                priced=priced.priced,
                priced_by=priced.priced_by,
                updated_at=now,
                updated_by=actor,
            )
    outcome.lines = planned


def _merge_wishlists(
    outcome: MergeOutcome, mine: list[Wishlist], theirs: list[Wishlist], limits: Limits
) -> None:
    planned = [
        PlannedWishlist(
            msgspec.structs.replace(w, items=list(w.items)), new=False, new_from=len(w.items)
        )
        for w in mine
    ]

    def find(w: Wishlist) -> PlannedWishlist | None:
        for p in planned:
            if w.id in SYSTEM_WISHLISTS or p.wishlist.id in SYSTEM_WISHLISTS:
                if p.wishlist.id == w.id:
                    return p
            elif wishlist_name_key(p.wishlist.name) == wishlist_name_key(w.name):
                return p
        return None

    for w in theirs:
        target = find(w)
        if target is None:
            if len(planned) >= limits.max_wishlists or (
                w.id not in SYSTEM_WISHLISTS
                and sum(p.wishlist.id not in SYSTEM_WISHLISTS for p in planned)
                >= limits.max_wishlists - len(SYSTEM_WISHLISTS)
            ):
                outcome.dropped_items += len(w.items)
                continue
            target = PlannedWishlist(msgspec.structs.replace(w, items=[]), new=True)
            planned.append(target)
        have = {line_key(i.sku, i.attrs) for i in target.wishlist.items}
        for item in w.items:
            key = line_key(item.sku, item.attrs)
            if key in have:
                continue
            if len(target.wishlist.items) >= limits.max_wishlist_items:
                outcome.dropped_items += 1
                continue
            target.wishlist.items.append(item)
            have.add(key)
    outcome.wishlists = planned


__all__ = [
    "MergeOutcome",
    "MergeStrategy",
    "PlannedLine",
    "PlannedWishlist",
    "WishItem",
    "merge",
    "wishlist_name_key",
]
