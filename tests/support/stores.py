"""A stores file (CARTSYNC_STORES_FILE) for tests: stores that take pick-ups at any hour a test
may run, and one with shop hours, in two timezones."""

from __future__ import annotations

import json
from pathlib import Path

EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

STORES = [
    {
        "id": "oslo-sentrum",
        "name": "Oslo Sentrum",
        "address": "Karl Johans gate 1, 0154 Oslo",
        "timezone": "Europe/Oslo",
        "hours": {d: {"open": "06:00", "close": "22:00"} for d in EVERY_DAY},
        "slot_minutes": 15,
        "lead_minutes": 30,
        "days_ahead": 3,
    },
    {
        "id": "brooklyn",
        "name": "Brooklyn Heights",
        "address": "100 Montague St, Brooklyn, NY 11201",
        "timezone": "America/New_York",
        "hours": {d: {"open": "00:00", "close": "23:59"} for d in EVERY_DAY},
        "slot_minutes": 15,
        "lead_minutes": 60,
        "days_ahead": 2,
    },
]


def write_stores(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "stores.json"
    path.write_text(json.dumps({"stores": STORES}, indent=2), encoding="utf-8")
    return path
