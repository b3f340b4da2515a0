"""Refusals from a real service become the right exception class, with code, field and extras."""

from __future__ import annotations

import pytest
from tests.conftest import Tokens
from tests.support.processes import ServiceProcess

from cartsync_client import (
    CartsyncClient,
    CartsyncError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from client_testkit import FAST


@pytest.mark.parametrize(
    ("call", "code", "field"),
    [
        (lambda c: c.patch_line("L999", qty=2), "line_not_found", "line_id"),
        (lambda c: c.remove_line("L999"), "line_not_found", "line_id"),
        (lambda c: c.save_for_later("L999"), "line_not_found", "line_id"),
        (lambda c: c.get_wishlist("w999"), "wishlist_not_found", "wishlist_id"),
        (lambda c: c.rename_wishlist("w999", "x"), "wishlist_not_found", "wishlist_id"),
        (lambda c: c.add_item("w999", "SKU-1"), "wishlist_not_found", "wishlist_id"),
        (lambda c: c.remove_item("w999", "i999"), "wishlist_not_found", "wishlist_id"),
        (lambda c: c.remove_item("default", "i999"), "item_not_found", "item_id"),
    ],
)
async def test_missing_things_are_not_found(
    shopper: CartsyncClient, call: object, code: str, field: str
) -> None:
    with pytest.raises(NotFound) as caught:
        await call(shopper)  # type: ignore[operator]
    assert (caught.value.status, caught.value.code, caught.value.field) == (404, code, field)


@pytest.mark.parametrize(
    ("call", "status", "code", "field"),
    [
        (lambda c: c.add_line("bad sku!"), 422, "invalid_field", "sku"),
        (lambda c: c.add_line("SKU-1", qty=0), 422, "invalid_field", "qty"),
        (lambda c: c.add_line("SKU-1", unit_price="cheap"), 422, "invalid_field", "unit_price"),
        (lambda c: c.checkout(), 422, "cart_empty", None),
        (lambda c: c.delete_wishlist("default"), 422, "wishlist_protected", "wishlist_id"),
        (lambda c: c.create_wishlist("   "), 422, "invalid_field", "name"),
        (lambda c: c.merge("not-a-token"), 422, "invalid_guest_token", "guest_token"),
        (lambda c: c.history(limit=-1), 422, "invalid_field", "limit"),
        (lambda c: c.add_line("SKU-1", idempotency_key="has space"), 400, "bad_header", None),
    ],
)
async def test_bad_requests_are_invalid(
    shopper: CartsyncClient, call: object, status: int, code: str, field: str | None
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await call(shopper)  # type: ignore[operator]
    assert (caught.value.status, caught.value.code) == (status, code)
    if field is not None:
        assert caught.value.field == field


async def test_reused_idempotency_key_is_invalid(shopper: CartsyncClient) -> None:
    await shopper.add_line("SKU-1", idempotency_key="same-key")
    with pytest.raises(InvalidRequest) as caught:
        await shopper.add_line("SKU-2", idempotency_key="same-key")
    assert (caught.value.code, caught.value.idempotency_key) == (
        "idempotency_key_reused",
        "same-key",
    )


async def test_name_taken_is_conflict(shopper: CartsyncClient) -> None:
    await shopper.create_wishlist("Garden")
    with pytest.raises(Conflict) as caught:
        await shopper.create_wishlist("garden")
    assert (caught.value.status, caught.value.code) == (409, "wishlist_name_taken")


async def test_line_conflict(shopper: CartsyncClient) -> None:
    red = await shopper.add_line("SOCK-1", attrs={"colour": "red"})
    await shopper.add_line("SOCK-1", attrs={"colour": "blue"})
    with pytest.raises(Conflict) as caught:
        await shopper.patch_line(red.line.id, attrs={"colour": "blue"})
    assert caught.value.code == "line_conflict"


async def test_stale_if_match_is_precondition_failed(shopper: CartsyncClient) -> None:
    await shopper.add_line("SKU-1")
    await shopper.add_line("SKU-2")
    with pytest.raises(PreconditionFailed) as caught:
        await shopper.set_note("late", if_match=1)
    error = caught.value
    assert (error.status, error.code, error.current_rev) == (412, "revision_mismatch", 2)
    assert error.idempotency_key is not None
    assert (await shopper.get_cart()).note == ""


async def test_bad_token_is_unauthorized(service: ServiceProcess) -> None:
    async with CartsyncClient(service.url, "not.a.jwt", backoff=FAST) as c:
        with pytest.raises(Unauthorized) as caught:
            await c.get_cart()
    assert (caught.value.status, caught.value.code) == (401, "unauthenticated")


async def test_wrong_role_is_forbidden(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    async with CartsyncClient(service.url, tokens.token("service", "svc"), backoff=FAST) as c:
        with pytest.raises(Forbidden) as caught:
            await c.get_cart()  # a service token has no cart of its own
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    customer = tokens.token("customer", customer_id)
    async with CartsyncClient(service.url, customer, customer="someone-else", backoff=FAST) as c:
        with pytest.raises(Forbidden):
            await c.get_cart()


async def test_every_error_is_a_cartsync_error(shopper: CartsyncClient) -> None:
    with pytest.raises(CartsyncError) as caught:
        await shopper.remove_item("default", "i1")
    assert str(caught.value).startswith("404 item_not_found")
