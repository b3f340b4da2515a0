"""The client's pure parts, without a service: revision order, backoff, error mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cartsync_client import (
    Backoff,
    CartsyncError,
    Conflict,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unavailable,
)
from cartsync_client.backoff import parse_retry_after
from cartsync_client.errors import error_for
from cartsync_client.gate import RevisionGate
from cartsync_client.live import websocket_url


def test_gate_hands_over_each_revision_once_in_order() -> None:
    gate = RevisionGate(since=3)
    verdicts = [gate.event(rev, now=0.0) for rev in (2, 3, 4, 4, 5)]
    assert verdicts == ["drop", "drop", "deliver", "drop", "deliver"]
    assert gate.rev == 5


def test_gate_asks_once_for_a_gap_then_waits_for_the_log() -> None:
    gate = RevisionGate(since=5, resync_after_s=5.0)
    assert gate.event(7, now=0.0) == "resync"
    gate.sync_sent(now=0.0)
    assert gate.event(8, now=1.0) == "drop"  # the sync is on its way: no storm of syncs
    assert gate.event(6, now=1.5) == "deliver"
    assert gate.event(7, now=1.6) == "deliver"
    assert gate.event(9, now=1.7) == "resync"  # a new gap after the old one closed


def test_gate_asks_again_when_a_gap_stays_open() -> None:
    gate = RevisionGate(since=1, resync_after_s=5.0)
    gate.sync_sent(now=0.0)
    assert gate.event(3, now=4.0) == "drop"
    assert gate.event(4, now=6.0) == "resync"


def test_gate_waits_for_a_snapshot_and_takes_it_even_lower() -> None:
    gate = RevisionGate(since=None)
    assert gate.event(1, now=0.0) == "drop"
    gate.snapshot(10)
    assert gate.event(11, now=0.0) == "deliver"
    gate.snapshot(0)  # the owner's data was erased: start again
    assert gate.event(1, now=0.0) == "deliver"


def test_gate_answers_an_unknown_type_with_one_snapshot_request() -> None:
    gate = RevisionGate(since=4, resync_after_s=5.0)
    assert gate.event(5, now=0.0, known=False) == "snapshot"
    gate.sync_sent(now=0.0)
    assert gate.event(6, now=1.0) == "drop"  # nothing on top of a change it could not apply
    assert gate.event(7, now=6.0) == "snapshot"  # still none: ask again
    gate.snapshot(7)
    assert gate.event(8, now=6.5) == "deliver"
    assert gate.event(8, now=6.6, known=False) == "drop"  # seen already, whatever its type


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/v1/ws"),
        ("https://carts.example/", "wss://carts.example/v1/ws"),
        ("https://shop.example/cartsync", "wss://shop.example/cartsync/v1/ws"),
    ],
)
def test_websocket_url(base: str, expected: str) -> None:
    assert websocket_url(base) == expected


def test_websocket_url_needs_http() -> None:
    with pytest.raises(ValueError, match="http"):
        websocket_url("ftp://x")


def test_backoff_is_full_jitter_under_a_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    for attempt in range(40):
        for _ in range(20):
            assert 0 <= backoff.delay(attempt) <= min(1.0, 0.1 * 2**attempt)
    assert all(backoff.delay(0, retry_after=3.0) >= 3.0 for _ in range(20))
    with pytest.raises(ValueError, match="base"):
        Backoff(base=2, cap=1)


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    found = parse_retry_after(later)
    assert found is not None
    assert 20 < found <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


@pytest.mark.parametrize(
    ("status", "code", "cls", "expected_status"),
    [
        (404, "line_not_found", NotFound, 404),
        (None, "line_not_found", NotFound, 404),
        (None, "wishlist_name_taken", Conflict, 409),
        (None, "invalid_field", InvalidRequest, 422),
        (None, "unknown_op", InvalidRequest, 422),
        (None, "store_unavailable", Unavailable, 503),
        (None, "rate_limited", RateLimited, 429),
        (None, "something_new", CartsyncError, 0),
        (502, "http_502", Unavailable, 502),
        (500, "internal_error", CartsyncError, 500),
        (413, "payload_too_large", InvalidRequest, 413),
    ],
)
def test_error_mapping(
    status: int | None, code: str, cls: type[CartsyncError], expected_status: int
) -> None:
    error = error_for(status, code, "message")
    assert type(error) is cls
    assert (error.status, error.code) == (expected_status, code)


def test_nack_revision_mismatch_keeps_the_current_revision() -> None:
    error = error_for(None, "revision_mismatch", "the cart is at revision 12; reload and retry")
    assert isinstance(error, PreconditionFailed)
    assert error.current_rev == 12
