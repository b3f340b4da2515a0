"""Size limits that keep one owner's data bounded."""

from __future__ import annotations

from dataclasses import dataclass

QTY_CEILING = 999
"""The wire format never accepts a quantity above this; ``Limits.max_qty`` may be lower."""


@dataclass(frozen=True)
class Limits:
    """Per-owner caps, checked atomically with every change."""

    max_lines: int = 200
    max_qty: int = QTY_CEILING
    max_wishlists: int = 20
    max_wishlist_items: int = 100

    def check(self) -> None:
        """Raise ValueError for a limit that cannot be honoured."""
        if not 1 <= self.max_qty <= QTY_CEILING:
            raise ValueError(f"CARTSYNC_MAX_QTY must be within 1..{QTY_CEILING}")
        for name in ("max_lines", "max_wishlists", "max_wishlist_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"CARTSYNC_{name.upper()} must be at least 1")
        if self.max_wishlists < 2:
            raise ValueError("CARTSYNC_MAX_WISHLISTS must leave room for 'default' and 'saved'")
