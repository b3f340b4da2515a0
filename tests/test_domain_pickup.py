"""The pick-up rules: slots in the store's wall-clock time, across DST changes and closed days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from cartsync.domain.pickup import (
    Hours,
    Store,
    Stores,
    check_pickup,
    check_stores,
    local_iso,
    next_slots,
    parse_time,
    too_late,
)
from cartsync.errors import Conflict, InvalidInput

OSLO = ZoneInfo("Europe/Oslo")
WEEKDAY_HOURS = {d: Hours("10:00", "18:00") for d in ("mon", "tue", "wed", "thu", "fri", "sat")}


def store(**kw: object) -> Store:
    fields: dict[str, object] = {
        "id": "oslo-sentrum",
        "name": "Oslo Sentrum",
        "address": "Karl Johans gate 1",
        "timezone": "Europe/Oslo",
        "hours": WEEKDAY_HOURS,
        "slot_minutes": 30,
        "lead_minutes": 60,
        "days_ahead": 7,
        **kw,
    }
    return msgspec.convert(fields, Store, from_attributes=True)


def oslo(*args: int) -> datetime:
    return datetime(*args, tzinfo=OSLO)  # type: ignore[misc]


def test_slots_start_at_opening_after_the_lead_time() -> None:
    now = oslo(2026, 12, 1, 9, 40)  # a Tuesday
    slots = next_slots(store(), now, limit=3)
    assert [local_iso(s) for s in slots] == [
        "2026-12-01T11:00:00+01:00",
        "2026-12-01T11:30:00+01:00",
        "2026-12-01T12:00:00+01:00",
    ]
    # The last slot of a day ends at closing time; the next day starts at opening.
    late = next_slots(store(), oslo(2026, 12, 1, 16, 20), limit=2)
    assert [local_iso(s) for s in late] == [
        "2026-12-01T17:30:00+01:00",
        "2026-12-02T10:00:00+01:00",
    ]


def test_a_closed_day_has_no_slots_and_refuses_a_time() -> None:
    saturday_evening = oslo(2026, 12, 5, 17, 45)
    (first,) = next_slots(store(), saturday_evening, limit=1)
    assert local_iso(first) == "2026-12-07T10:00:00+01:00"  # Sunday skipped, Monday opening
    with pytest.raises(InvalidInput, match="closed that day") as exc:
        check_pickup(store(), oslo(2026, 12, 6, 12, 0), saturday_evening)
    assert (exc.value.code, exc.value.field) == ("invalid_pickup", "pickup_at")


def test_slots_keep_the_wall_clock_across_the_autumn_dst_change() -> None:
    # Europe/Oslo leaves summer time on Sunday 25 October 2026 at 03:00 (+02:00 -> +01:00).
    every_day = store(hours={d: Hours("10:00", "18:00") for d in ("sat", "sun", "mon")})
    now = oslo(2026, 10, 24, 17, 0)
    slots = next_slots(every_day, now, limit=17)
    assert local_iso(slots[0]) == "2026-10-25T10:00:00+01:00"
    assert local_iso(slots[16]) == "2026-10-26T10:00:00+01:00"
    # 17:00 to 10:00 on the wall clock, plus the hour given back.
    assert slots[0].astimezone(UTC) - now.astimezone(UTC) == timedelta(hours=18)
    # A slot the day before, in summer time, is still 10:00 local.
    saturday = next_slots(every_day, oslo(2026, 10, 24, 8, 0), limit=1)
    assert local_iso(saturday[0]) == "2026-10-24T10:00:00+02:00"


def test_a_night_store_skips_the_hour_that_spring_forward_removes() -> None:
    # 29 March 2026: 02:00 jumps to 03:00 in Europe/Oslo, so there is no 02:00 or 02:30.
    night = store(hours={"sun": Hours("00:00", "05:00")}, slot_minutes=60, lead_minutes=0)
    slots = next_slots(night, oslo(2026, 3, 28, 23, 0), limit=10)
    assert [local_iso(s) for s in slots] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_check_pickup_names_each_broken_rule() -> None:
    now = oslo(2026, 12, 1, 9, 40)
    s = store()
    cases = {
        oslo(2026, 12, 9, 12, 0): "7 days ahead",
        oslo(2026, 12, 2, 19, 0): "10:00-18:00",
        oslo(2026, 12, 2, 17, 45): "10:00-18:00",
        oslo(2026, 12, 2, 12, 10): "every 30 minutes",
        oslo(2026, 12, 2, 12, 0).replace(second=5): "every 30 minutes",
    }
    for at, why in cases.items():
        with pytest.raises(InvalidInput, match=why):
            check_pickup(s, at, now)


def test_too_late_says_when_a_time_has_passed_or_is_inside_the_lead_time() -> None:
    now = oslo(2026, 12, 1, 9, 40)
    s = store()
    assert "has passed" in (too_late(s, oslo(2026, 12, 1, 9, 30), now) or "")
    assert "60 minutes" in (too_late(s, oslo(2026, 12, 1, 10, 30), now) or "")
    assert too_late(s, oslo(2026, 12, 1, 10, 40), now) is None
    # A slot accepted earlier is still a slot: only its distance from now changed.
    assert check_pickup(s, oslo(2026, 12, 1, 10, 30), now) == oslo(2026, 12, 1, 10, 30)


def test_a_time_given_in_another_offset_is_answered_in_the_store_time() -> None:
    now = oslo(2026, 12, 1, 9, 40)
    at = check_pickup(store(), parse_time("2026-12-08T11:00:00Z"), now)
    assert local_iso(at) == "2026-12-08T12:00:00+01:00"
    assert check_pickup(store(), datetime(2026, 12, 8, 11, 0, tzinfo=UTC), now) == at


@pytest.mark.parametrize(
    "raw", ["tomorrow at 3", "2026-12-01T15:00:00", "2026-12-01", "2026-13-01T15:00:00+01:00"]
)
def test_parse_time_wants_a_date_time_with_an_offset(raw: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_time(raw)
    assert (exc.value.code, exc.value.field) == ("invalid_pickup", "pickup_at")


def test_stores_choose_refuses_unknown_stores_and_answers_409_when_none_are_set_up() -> None:
    now = oslo(2026, 12, 1, 9, 40)
    with pytest.raises(Conflict) as none:
        Stores().choose("oslo-sentrum", "2026-12-02T12:00:00+01:00", now)
    assert none.value.code == "collection_unavailable"
    with pytest.raises(InvalidInput) as unknown:
        Stores([store()]).choose("bergen", "2026-12-02T12:00:00+01:00", now)
    assert (unknown.value.code, unknown.value.field) == ("unknown_store", "store_id")
    chosen, at, late = Stores([store()]).choose("oslo-sentrum", "2026-12-02T12:00:00+01:00", now)
    assert (chosen.id, local_iso(at), late) == ("oslo-sentrum", "2026-12-02T12:00:00+01:00", None)
    soon = Stores([store()]).choose("oslo-sentrum", "2026-12-01T10:00:00+01:00", now)
    assert "60 minutes" in (soon[2] or "")


def test_check_stores_finds_unusable_entries() -> None:
    assert check_stores([store()]) is None
    assert check_stores([store(), store()]) == ("$.stores[1].id", "'oslo-sentrum' is listed twice")
    assert check_stores([store(timezone="Mars/Olympus")])[0] == "$.stores[0].timezone"  # type: ignore[index]
    assert check_stores([store(hours={"funday": Hours("10:00", "18:00")})])[0] == (  # type: ignore[index]
        "$.stores[0].hours.funday"
    )
    assert check_stores([store(hours={"mon": Hours("10:00", "25:00")})])[0] == (  # type: ignore[index]
        "$.stores[0].hours.mon.close"
    )
    assert check_stores([store(hours={"mon": Hours("10:00", "10:15")})])[0] == (  # type: ignore[index]
        "$.stores[0].hours.mon"
    )
