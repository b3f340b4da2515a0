"""The click-and-collect stores, public: a shopper picks a store and a slot before signing in."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from cartsync import wire
from cartsync.domain.pickup import local_iso, next_slots
from cartsync.web.endpoints import Answer, PublicRoute, json_response
from cartsync.web.services import Services


async def list_stores(request: Request) -> Response:
    """Every configured store with its next slots (an empty list: no store can be chosen)."""
    services: Services = request.app.state.services
    now = datetime.now(UTC)
    body = wire.PickupStores(
        stores=[
            wire.PickupStore(
                id=s.id,
                name=s.name,
                address=s.address,
                timezone=s.timezone,
                hours=s.hours,
                slot_minutes=s.slot_minutes,
                lead_minutes=s.lead_minutes,
                days_ahead=s.days_ahead,
                next_slots=[local_iso(at) for at in next_slots(s, now)],
            )
            for s in services.settings.stores.listed
        ]
    )
    return json_response(body)


PUBLIC = [
    PublicRoute(
        "GET",
        "/v1/stores",
        list_stores,
        "The stores that take click-and-collect orders, with their next pick-up slots",
        {
            200: Answer(
                "The stores (none when click-and-collect store choice is off)",
                wire.PickupStores,
                example={
                    "stores": [
                        {
                            "id": "oslo-sentrum",
                            "name": "Oslo Sentrum",
                            "address": "Karl Johans gate 1, 0154 Oslo",
                            "timezone": "Europe/Oslo",
                            "hours": {"mon": {"open": "10:00", "close": "20:00"}},
                            "slot_minutes": 30,
                            "lead_minutes": 60,
                            "days_ahead": 7,
                            "next_slots": ["2026-12-07T15:00:00+01:00"],
                        }
                    ]
                },
            ),
        },
    ),
]
