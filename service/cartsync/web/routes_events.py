"""``GET /v1/events``: the back-office events for back ends that cannot receive webhooks.

The feed is written by the delivery worker (its built-in endpoint), so it has the webhooks'
event ids and each customer's order; ``next`` is a cursor into it, not an event id.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from cartsync import wire
from cartsync.domain.principal import Role
from cartsync.errors import Forbidden, InvalidInput
from cartsync.events.catalogue import EVENT_TYPES
from cartsync.storage.outbox import Outbox
from cartsync.web import inputs
from cartsync.web.endpoints import Answer, PublicRoute, QueryParam, json_response
from cartsync.web.services import Services

MAX_WAIT_S = 30
MAX_LIMIT = 500
_CURSOR = re.compile(r"0|\d{1,15}-\d{1,15}")
_decode = msgspec.json.Decoder(wire.BackOfficeEvent)

Cursor = Annotated[str, Meta(pattern=r"^(0|\d{1,15}-\d{1,15})$")]
_TYPE = "(" + "|".join(re.escape(t) for t in EVENT_TYPES) + ")"
Types = Annotated[str, Meta(pattern=f"^{_TYPE}(,{_TYPE})*$")]
Seconds = Annotated[int, Meta(ge=0, le=MAX_WAIT_S)]
Limit = Annotated[int, Meta(ge=1, le=MAX_LIMIT)]


async def list_events(request: Request) -> Response:
    """Events after the cursor ``after``, waiting up to ``wait`` seconds for the first one."""
    services: Services = request.app.state.services
    principal = await services.authenticate(request)
    if principal.role is not Role.SERVICE:
        raise Forbidden("the event feed is for service tokens")
    await services.rate_limit(principal)
    query = request.query_params
    after = query.get("after", "0")
    if _CURSOR.fullmatch(after) is None:
        raise InvalidInput(
            "after is a cursor from a previous answer's next", code="invalid_field", field="after"
        )
    wanted: set[str] | None = None
    if "types" in query:
        wanted = {t.strip() for t in query["types"].split(",") if t.strip()}
        unknown = sorted(wanted - set(EVENT_TYPES))
        if unknown or not wanted:
            raise InvalidInput(
                f"unknown event type {', '.join(unknown) or '(none given)'}; known: "
                + ", ".join(EVENT_TYPES),
                code="unknown_event_type",
                field="types",
            )
    wait = inputs.query_int(query.get("wait"), "wait", 0)
    if wait > MAX_WAIT_S:
        raise InvalidInput(
            f"wait is at most {MAX_WAIT_S} seconds", code="invalid_field", field="wait"
        )
    limit = inputs.query_int(query.get("limit"), "limit", 100)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit is from 1 to {MAX_LIMIT}", code="invalid_field", field="limit")
    if not services.settings.events:
        wait = 0  # this deployment writes no events: nothing will come to wait for
    outbox = Outbox(services.store.redis, services.settings.outbox_partitions)
    deadline = time.monotonic() + wait
    events: list[wire.BackOfficeEvent] = []
    cursor = after
    while True:
        rows = await outbox.read_feed(cursor, limit, None)
        if not rows and time.monotonic() < deadline:
            # In steps under the Redis socket timeout, so a long poll never looks like a hang.
            step = max(1, min(1000, int((deadline - time.monotonic()) * 1000)))
            rows = await outbox.read_feed(cursor, limit, step)
        for entry_id, raw in rows:
            cursor = entry_id
            event = _decode.decode(raw)
            if wanted is None or event.type in wanted:
                events.append(event)
        if events or time.monotonic() >= deadline:
            break
    return json_response(wire.EventsPage(events=events, next=cursor))


EXAMPLE = {
    "events": [
        {
            "id": "evt_9f2c4e1a0b7d3c55_7",
            "type": "cart.checked_out",
            "occurred_at": "2026-11-30T12:00:00.000Z",
            "owner": "c:alice",
            "customer_id": "alice",
            "rev": 7,
            "epoch": "9f2c4e1a0b7d3c55",
            "data": {"cart_id": "5b0e", "currency": "EUR", "lines": []},
        }
    ],
    "next": "1796058006495-0",
}

PUBLIC = [
    PublicRoute(
        "GET",
        "/v1/events",
        list_events,
        "Service token: back-office events after a cursor, in each customer's order "
        "(long-poll with wait); docs/events.md",
        {
            200: Answer("Events and the next cursor", wire.EventsPage, example=EXAMPLE),
            400: Answer("Malformed query or header", wire.ErrorBody),
            401: Answer("Missing or invalid token", wire.ErrorBody, headers=("WWW-Authenticate",)),
            403: Answer("Not a service token", wire.ErrorBody),
            422: Answer("A bad cursor, wait or limit, or an unknown event type", wire.ErrorBody),
            429: Answer("Too many requests", wire.ErrorBody, headers=("Retry-After",)),
            503: Answer("Redis unreachable", wire.ErrorBody, headers=("Retry-After",)),
        },
        token=True,
        name="list_events",
        tag="service",
        query=(
            QueryParam("after", Cursor, "The previous answer's next (default 0: the start)"),
            QueryParam("types", Types, "Comma-separated event types (default: all)"),
            QueryParam(
                "wait",
                Seconds,
                "Seconds to wait for a first event (0-30, default 0; not waited when "
                "CARTSYNC_EVENTS is off)",
                5,
            ),
            QueryParam("limit", Limit, "At most this many events (1-500, default 100)", 100),
        ),
    ),
]
