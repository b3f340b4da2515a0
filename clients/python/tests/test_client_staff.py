"""A store hand-off seen by the customer's mirror, start to end, and history read page by page."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cartsync.domain.events import ALL
from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

from cartsync_client import (
    EVENT_TYPES,
    CartMirror,
    CartsyncClient,
    NotFound,
    SessionClosed,
    Subscription,
)
from client_testkit import FAST, follow


def test_the_client_knows_every_event_type_of_the_service() -> None:
    """A type the service learns fails here until the client handles it."""
    assert set(EVENT_TYPES) == set(ALL)
    assert CartMirror().known_types == EVENT_TYPES


async def _agree(customer: CartsyncClient, live: Subscription, mirror: CartMirror) -> int:
    """Bring the mirror to the service's revision; the revision, once it equals REST."""
    cart = await customer.get_cart()
    await follow(live, mirror, cart.rev)
    wishlists = (await customer.list_wishlists()).wishlists
    assert mirror.agrees_with(cart, wishlists), (mirror.lines, cart.lines)
    return cart.rev


async def _drain(live: Subscription) -> None:
    """Read until the subscription ends (bounded in time)."""
    async with asyncio.timeout(10):
        async for _ in live:
            pass


async def test_the_mirror_follows_a_staff_session_from_start_to_end(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    staff_token = tokens.token("staff", f"emp-{uuid.uuid4().hex[:8]}", store="s1")
    async with (
        CartsyncClient(service.url, tokens.token("customer", customer_id), backoff=FAST) as phone,
        CartsyncClient(service.url, staff_token, device_id="tablet", backoff=FAST) as staff,
        phone.subscribe(backoff=FAST) as live,
    ):
        mirror = CartMirror()
        mirror.apply(await asyncio.wait_for(anext(live), 10))
        await phone.add_line("TSHIRT-1", attrs={"size": "M"})
        await _agree(phone, live, mirror)

        handoff = await phone.create_handoff()
        assert len(handoff.code) == 8
        assert handoff.code.isdigit()
        grant = (await staff.claim_handoff(handoff.code)).grant
        assert (grant.owner, grant.store) == (f"c:{customer_id}", "s1")
        rev = await _agree(phone, live, mirror)
        started = (await phone.history(rev - 1)).events
        assert [(e.type, e.data["grant"]["id"]) for e in started] == [("grant.started", grant.id)]
        assert [g.id for g in (await phone.list_grants()).grants] == [grant.id]
        with pytest.raises(NotFound):
            await staff.claim_handoff(handoff.code)  # one use only

        tablet = staff.for_grant(grant.id)
        async with tablet.subscribe(backoff=FAST) as tablet_live:
            tablet_mirror = CartMirror()
            tablet_mirror.apply(await asyncio.wait_for(anext(tablet_live), 10))
            jeans = (await tablet.add_line("JEANS-2", qty=2, attrs={"size": "32"})).line
            assert (jeans.updated_by.role, jeans.updated_by.store) == ("staff", "s1")
            await tablet.set_ready_for_collection(True)
            rev = await _agree(phone, live, mirror)
            assert mirror.ready_for_collection
            assert [line.sku for line in mirror.lines] == ["TSHIRT-1", "JEANS-2"]
            await follow(tablet_live, tablet_mirror, rev)
            assert tablet_mirror.agrees_with(await phone.get_cart())

            await phone.set_ready_for_collection(False)
            await phone.revoke_grant(grant.id)
            rev = await _agree(phone, live, mirror)
            assert not mirror.ready_for_collection
            assert (await phone.list_grants()).grants == []
            with pytest.raises(SessionClosed) as closed:
                await _drain(tablet_live)
            assert closed.value.close_code == 4403
        revoked = (await phone.history(rev - 1)).events
        assert [(e.type, e.data["grant_id"]) for e in revoked] == [("grant.revoked", grant.id)]
        with pytest.raises(NotFound):
            await tablet.get_cart()
    assert live.rev == mirror.rev


async def test_history_pages_reach_the_revision_of_the_first_page(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with CartsyncClient(
        service.url, tokens.token("customer", customer_id), backoff=FAST
    ) as phone:
        for n in range(7):
            await phone.set_note(f"note {n}")
        pages = [page async for page in phone.history_pages(since=1, limit=3)]
        everything = [page async for page in phone.history_pages()]
    assert [[e.rev for e in page.events] for page in pages] == [[2, 3, 4], [5, 6, 7]]
    assert all(page.complete and page.rev == 7 for page in pages)
    assert [[e.rev for e in page.events] for page in everything] == [list(range(1, 8))]
    mirror = CartMirror()
    for event in (e for page in everything for e in page.events):
        assert mirror.apply(event)
    assert mirror.note == "note 6"
