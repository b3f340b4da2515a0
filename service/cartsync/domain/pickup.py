"""Click-and-collect: the retailer's stores and which pick-up times they can take.

Pure rules over the stores file (``CARTSYNC_STORES_FILE``, docs/configuration.md): a pick-up
time is a slot start in the store's own wall-clock time (its IANA timezone, so a DST change
moves no slot), on an open day, at least the lead time from now and no more than ``days_ahead``
local days after today. Times are compared as instants; answers are in the store's local time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from cartsync.domain.model import Collection
from cartsync.errors import Conflict, InvalidInput

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"


class Hours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One weekday's opening hours, local wall-clock ``HH:MM``; ``close`` after ``open``."""

    open: str
    close: str


class Store(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A store as the retailer configures it; ``id`` is the staff token's ``store`` claim."""

    id: Annotated[str, msgspec.Meta(pattern=_ID)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    timezone: str
    hours: dict[str, Hours]
    """Weekday (``mon`` .. ``sun``) -> hours; a day left out is closed."""
    slot_minutes: Annotated[int, msgspec.Meta(ge=5, le=240)] = 30
    lead_minutes: Annotated[int, msgspec.Meta(ge=0, le=10_080)] = 60
    days_ahead: Annotated[int, msgspec.Meta(ge=0, le=60)] = 7

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def problem(self) -> tuple[str, str] | None:
        """(field, why) for a value the types allow but the rules cannot use."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return "timezone", f"{self.timezone!r} is not an IANA timezone such as Europe/Oslo"
        for day, hours in self.hours.items():
            if day not in WEEKDAYS:
                return f"hours.{day}", f"weekdays are {', '.join(WEEKDAYS)}"
            for name, value in (("open", hours.open), ("close", hours.close)):
                if not _CLOCK.fullmatch(value):
                    return f"hours.{day}.{name}", f"{value!r} is not a time like 09:30"
            if _minutes(hours.close) - _minutes(hours.open) < self.slot_minutes:
                return f"hours.{day}", "close must leave one slot after open"
        return None


class StoresFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stores: list[Store]


def _minutes(clock: str) -> int:
    hh, mm = clock.split(":")
    return int(hh) * 60 + int(mm)


def check_stores(stores: Sequence[Store]) -> tuple[str, str] | None:
    """(field, why) of the first unusable entry (``$.stores[i].field``), or None."""
    seen: set[str] = set()
    for i, store in enumerate(stores):
        if store.id in seen:
            return f"$.stores[{i}].id", f"{store.id!r} is listed twice"
        seen.add(store.id)
        found = store.problem()
        if found is not None:
            return f"$.stores[{i}].{found[0]}", found[1]
    return None


def _wall(store: Store, day: date, minutes: int) -> datetime | None:
    """The instant of a local wall-clock time, or None when a DST gap skips it."""
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=store.zone)
    if local.astimezone(UTC).astimezone(store.zone).replace(tzinfo=None) != local.replace(
        tzinfo=None
    ):
        return None
    return local


def _day_slots(store: Store, day: date) -> Iterator[datetime]:
    hours = store.hours.get(WEEKDAYS[day.weekday()])
    if hours is None:
        return
    start, close = _minutes(hours.open), _minutes(hours.close)
    for m in range(start, close - store.slot_minutes + 1, store.slot_minutes):
        at = _wall(store, day, m)
        if at is not None:
            yield at


def next_slots(store: Store, now: datetime, limit: int = 48) -> list[datetime]:
    """The earliest bookable slot starts after ``now``, in the store's local time."""
    # Compared in UTC: Python compares two times of one zone by wall clock, ignoring DST.
    earliest = now.astimezone(UTC) + timedelta(minutes=store.lead_minutes)
    today = now.astimezone(store.zone).date()
    found: list[datetime] = []
    for ahead in range(store.days_ahead + 1):
        for at in _day_slots(store, today + timedelta(days=ahead)):
            if at.astimezone(UTC) >= earliest:
                found.append(at)
                if len(found) == limit:
                    return found
    return found


def local_iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def parse_time(raw: str) -> datetime:
    """An ISO 8601 time with its UTC offset (``Z`` or ``+01:00``); 422 ``invalid_pickup``."""
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or "T" not in raw:
        raise InvalidInput(
            "pickup_at is a date and time with its offset, like 2026-12-01T15:00:00+01:00",
            code="invalid_pickup",
            field="pickup_at",
        )
    return at


def _refusal(store: Store, local: datetime, why: str) -> str:
    return f"{store.name} cannot take a pick-up at {local_iso(local)}: {why}"


def too_late(store: Store, at: datetime, now: datetime) -> str | None:
    """Why ``at`` can no longer be booked at ``now`` (passed, or inside the lead time), or None.

    The one refusal that time turns on a choice once accepted: the mutation script applies it
    only to a fresh request, so a retry of an accepted choice replays its first answer."""
    instant, now = at.astimezone(UTC), now.astimezone(UTC)
    if instant <= now:
        return _refusal(store, at.astimezone(store.zone), "that time has passed")
    if instant < now + timedelta(minutes=store.lead_minutes):
        why = f"orders need {store.lead_minutes} minutes before pick-up"
        return _refusal(store, at.astimezone(store.zone), why)
    return None


def check_pickup(store: Store, at: datetime, now: datetime) -> datetime:
    """``at`` in the store's local time if the store's hours and slots can take it, else 422
    ``invalid_pickup``. Whether it is still early enough is ``too_late``'s to say."""
    local = at.astimezone(store.zone)

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(_refusal(store, local, why), code="invalid_pickup", field="pickup_at")

    today = now.astimezone(store.zone).date()
    if (local.date() - today).days > store.days_ahead:
        raise refuse(f"pick-ups can be booked {store.days_ahead} days ahead at most")
    hours = store.hours.get(WEEKDAYS[local.weekday()])
    if hours is None:
        raise refuse("the store is closed that day")
    minute = local.hour * 60 + local.minute
    start, close = _minutes(hours.open), _minutes(hours.close)
    if not start <= minute <= close - store.slot_minutes:
        raise refuse(f"the store takes pick-ups {hours.open}-{hours.close} that day")
    if local.second or local.microsecond or (minute - start) % store.slot_minutes:
        raise refuse(f"pick-ups start every {store.slot_minutes} minutes from {hours.open}")
    return local


class Stores:
    """The configured stores, by id; empty when click-and-collect store choice is off."""

    def __init__(self, stores: Sequence[Store] = ()) -> None:
        self.listed: tuple[Store, ...] = tuple(stores)
        self.by_id: Mapping[str, Store] = {s.id: s for s in stores}

    def __bool__(self) -> bool:
        return bool(self.listed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stores) and other.listed == self.listed

    def __hash__(self) -> int:
        return hash(tuple(self.by_id))

    def choose(
        self, store_id: str, pickup_at: str, now: datetime
    ) -> tuple[Store, datetime, str | None]:
        """The store, the local pick-up time and ``too_late``'s refusal if any; or the reason
        why not (409 when none is set up)."""
        if not self.listed:
            raise Conflict(
                "this shop has no stores set up for click-and-collect",
                code="collection_unavailable",
                field="store_id",
            )
        store = self.by_id.get(store_id)
        if store is None:
            raise InvalidInput(f"no store {store_id!r}", code="unknown_store", field="store_id")
        at = check_pickup(store, parse_time(pickup_at), now)
        return store, at, too_late(store, at, now)


_chosen = msgspec.json.Decoder(Collection)
_encode = msgspec.json.Encoder()


def chosen_json(store: Store, at: datetime) -> str:
    """How a choice is stored (the owner's meta field 'pickup'): the store's name as it was."""
    return _encode.encode(
        {"store_id": store.id, "store_name": store.name, "pickup_at": local_iso(at)}
    ).decode()


def stored_collection(ready: str | None, pickup: str | None) -> Collection:
    """The cart's ``collection`` from the meta fields 'collection' ('1': ready) and 'pickup'."""
    chosen = _chosen.decode(pickup) if pickup else Collection()
    chosen.ready = ready == "1"
    return chosen
