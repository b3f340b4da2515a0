"""The back-office event types (docs/events.md shows each one's JSON)."""

from __future__ import annotations

from typing import Final

EVENT_TYPES: Final = (
    "cart.checked_out",
    "cart.abandoned",
    "cart.expiring",
    "cart.expired",
    "cart.collection_ready",
    "wishlist.item_added",
    "customer.erased",
)
"""Every type a webhook endpoint may subscribe to and ``GET /v1/events`` may filter on."""
