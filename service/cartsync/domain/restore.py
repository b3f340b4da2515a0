"""An owner's cart and wishlists at an earlier revision, rebuilt from the event log.

The log holds events, not states. Every few revisions a log entry also carries the state after
it (``storage/lua/restore.lua``), and ``cart.restored`` events carry a whole state too, so the
state at ``rev`` is the nearest such base at or before ``rev`` with the events after it applied
forwards; every event type carries what it leaves behind (the line as it is now, the removed
id, ...), so no event needs undoing. A log that still starts at revision 1 also has the empty
state before it as a base. Values stay as stored (plain JSON objects): they go back to the
script that writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cartsync.domain import events as ev
from cartsync.domain.merge import wishlist_name_key
from cartsync.domain.model import item_order, line_key

Obj = dict[str, Any]


class OutOfReach(Exception):
    """The log no longer holds a base at or before the asked revision (or it is not past)."""

    def __init__(self, message: str, reach: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.reach = reach


@dataclass(frozen=True)
class LogEntry:
    """One log entry: its revision, its event, and the state after it when it carries one."""

    rev: int
    event: Obj
    state: Obj | None = None


@dataclass
class State:
    """Cart lines, note and wishlists as stored: wishlist records and their items by id."""

    note: str = ""
    lines: dict[str, Obj] = field(default_factory=dict)
    wishlists: dict[str, Obj] = field(default_factory=dict)
    items: dict[str, dict[str, Obj]] = field(default_factory=dict)

    @classmethod
    def stored(
        cls,
        note: str,
        lines: Iterable[Obj],
        wishlists: Iterable[Obj],
        items: Iterable[Sequence[Any]],
    ) -> State:
        """From the stored hashes: items come as ``('<wishlist id>/<item id>', item)`` pairs."""
        s = cls(note, {line["id"]: line for line in lines}, {w["id"]: w for w in wishlists})
        for field_name, item in items:
            s.items.setdefault(str(field_name).partition("/")[0], {})[item["id"]] = item
        return s

    def _replace(self, data: Obj) -> None:
        self.lines = {line["id"]: line for line in data["lines"]}
        self.wishlists, self.items = {}, {}
        for w in data["wishlists"]:
            self.wishlists[w["id"]] = _record(w)
            self.items[w["id"]] = {i["id"]: i for i in w.get("items", [])}

    def _open(self, wishlist_id: str, at: str) -> None:
        if wishlist_id not in self.wishlists:  # system lists appear on first use
            self.wishlists[wishlist_id] = {
                "id": wishlist_id,
                "name": wishlist_id,
                "name_key": wishlist_id,
                "created_at": at,
                "updated_at": at,
            }

    def apply(self, event: Obj) -> None:
        """Forwards: the state after ``event``, given the state before it."""
        kind, data, at = event["type"], event["data"], event["at"]
        if kind in (ev.LINE_ADDED, ev.LINE_UPDATED):
            self.lines[data["line"]["id"]] = data["line"]
        elif kind == ev.LINE_REMOVED:
            self.lines.pop(data["line_id"], None)
        elif kind == ev.LINE_SAVED_FOR_LATER:
            self.lines.pop(data["line_id"], None)
            self._open(data["wishlist_id"], at)
            self.items.setdefault(data["wishlist_id"], {})[data["item"]["id"]] = data["item"]
        elif kind == ev.CART_CLEARED:
            self.lines = {}
        elif kind == ev.CART_NOTE_SET:
            self.note = data["note"]
        elif kind == ev.CART_CHECKED_OUT:
            self.lines, self.note = {}, ""
        elif kind == ev.CART_MERGED:
            self._replace(data)
        elif kind == ev.CART_RESTORED:
            self._replace(data)
            self.note = data["note"]
        elif kind in (ev.WISHLIST_CREATED, ev.WISHLIST_RENAMED):
            w = data["wishlist"]
            self.wishlists[w["id"]] = _record(w)
            self.items[w["id"]] = {i["id"]: i for i in w.get("items", [])}
        elif kind == ev.WISHLIST_DELETED:
            self.wishlists.pop(data["wishlist_id"], None)
            self.items.pop(data["wishlist_id"], None)
        elif kind == ev.WISHLIST_ITEM_ADDED:
            self._open(data["wishlist_id"], at)
            self.items.setdefault(data["wishlist_id"], {})[data["item"]["id"]] = data["item"]
        elif kind == ev.WISHLIST_ITEM_REMOVED:
            self.items.get(data["wishlist_id"], {}).pop(data["item_id"], None)
        elif kind == ev.WISHLIST_ITEM_MOVED_TO_CART:
            self.items.get(data["wishlist_id"], {}).pop(data["item_id"], None)
            self.lines[data["line"]["id"]] = data["line"]
        # cart.collection_set and grant.*: not part of what a restore puts back.

    def payload_lines(self) -> list[Obj]:
        """Lines for the write script: each with its line key, in the order they were added."""
        ordered = sorted(self.lines.values(), key=lambda line: item_order(line["id"]))
        return [{**line, "key": line_key(line["sku"], line["attrs"])} for line in ordered]

    def payload_wishlists(self) -> list[Obj]:
        """Wishlists for the write script, items keyed like lines."""
        out = []
        for wid, w in sorted(self.wishlists.items(), key=lambda kv: item_order(kv[0])):
            items = sorted(self.items.get(wid, {}).values(), key=lambda i: item_order(i["id"]))
            entry: Obj = {
                "id": wid,
                "name": w["name"],
                "name_key": w.get("name_key") or wishlist_name_key(w["name"]),
                "items": [{**i, "key": line_key(i["sku"], i["attrs"])} for i in items],
            }
            if w.get("created_at"):
                entry["created_at"] = w["created_at"]
            out.append(entry)
        return out


def _record(w: Obj) -> Obj:
    name_key = w["id"] if w["id"] in ev.SYSTEM_WISHLISTS else wishlist_name_key(w["name"])
    return {
        "id": w["id"],
        "name": w["name"],
        "name_key": name_key,
        "created_at": w.get("created_at"),
        "updated_at": w.get("updated_at"),
    }


def _base(entry: LogEntry) -> State | None:
    if entry.state is not None:
        s = entry.state
        return State.stored(s["note"], s["lines"], s["wishlists"], s["items"])
    if entry.event["type"] == ev.CART_RESTORED:
        state = State()
        state.apply(entry.event)
        return state
    return None


def reach(log_first: int | None, entries: Sequence[LogEntry]) -> int | None:
    """The oldest revision a restore can reach with this log, or None."""
    if log_first == 1:
        return 0
    bases = [e.rev for e in entries if e.state is not None or e.event["type"] == ev.CART_RESTORED]
    return min(bases) if bases else None


def state_at(rev: int, current: int, log_first: int | None, entries: Sequence[LogEntry]) -> State:
    """The state after revision ``rev``; ``entries`` are the log's, oldest first, up to ``rev``."""
    if rev >= current:
        raise OutOfReach(
            f"the cart is at revision {current}; restore to an earlier one",
            reach(log_first, entries),
        )
    state: State | None = State() if log_first == 1 else None
    start = 0
    for i, entry in enumerate(entries):
        if entry.rev > rev:
            break
        base = _base(entry)
        if base is not None:
            state, start = base, i + 1
    if state is None:
        oldest = reach(log_first, entries)
        where = (
            f"the oldest revision it can restore is {oldest}"
            if oldest is not None
            else "it holds no revision to restore from"
        )
        raise OutOfReach(f"revision {rev} is older than the log reaches; {where}", oldest)
    for entry in entries[start:]:
        if entry.rev > rev:
            break
        state.apply(entry.event)
    return state
