"""Who may price a line, and what a cart adds up to.

The shop's catalogue is the authority on names and prices when one is configured: customers and
guests cannot set them, staff and back-end services may override them, and every line records
who priced it (``priced_by``). The catalogue itself is a port (``Catalog``); its HTTP adapter
lives in ``cartsync.catalog``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context
from typing import Any, Literal, Protocol

import msgspec

from cartsync.domain.model import Cart, Line
from cartsync.domain.principal import Role
from cartsync.errors import CatalogUnavailable, InvalidInput

FailureMode = Literal["open", "closed"]
PricedBy = Literal["catalog", "staff", "service", "client"]
TRUSTED: Mapping[Role, PricedBy] = {Role.STAFF: "staff", Role.SERVICE: "service"}
"""Roles whose ``title`` and ``unit_price`` override the catalogue's."""


@dataclass(frozen=True)
class Product:
    """One product as the catalogue describes it; ``unit_price`` is a decimal string."""

    sku: str
    title: str
    unit_price: str
    currency: str
    image: str | None = None


class Catalog(Protocol):
    """The shop's product catalogue."""

    async def products(self, skus: Collection[str]) -> Mapping[str, Product]:
        """The known products among ``skus``; unknown SKUs are absent.

        Raises ``CatalogUnavailable`` when the catalogue cannot answer (down, slow, wrong shape).
        """
        ...


@dataclass(frozen=True)
class Asked:
    """A line as the caller sent it: the SKU and what the caller says about it."""

    sku: str
    title: str | None = None
    unit_price: str | None = None


class Pricing:
    """Turns what a caller asked for into the price fields a line stores."""

    def __init__(self, catalog: Catalog | None, failure: FailureMode, currency: str) -> None:
        self.catalog = catalog
        self.failure = failure
        self.currency = currency

    async def price(self, role: Role, asked: Sequence[Asked]) -> list[dict[str, Any]]:
        """Price fields for each asked line, with one catalogue lookup for all of them."""
        trusted = TRUSTED.get(role)
        if self.catalog is None:
            return [self._uncatalogued(a, trusted or "client") for a in asked]
        try:
            products = await self.catalog.products({a.sku for a in asked})
        except CatalogUnavailable:
            if self.failure == "closed":
                raise
            # Open: the line is taken without a price; only a trusted caller's price stands.
            return [self._uncatalogued(a, trusted) if trusted else {"priced": False} for a in asked]
        fields: list[dict[str, Any]] = []
        for a in asked:
            product = products.get(a.sku)
            if product is None:
                raise InvalidInput(
                    f"the shop's catalogue has no product {a.sku!r}",
                    code="unknown_sku",
                    field="sku",
                )
            fields.append(_from_catalog(product, a, trusted))
        return fields

    async def reprice(self, lines: Sequence[Line]) -> list[Line]:
        """``lines`` with the catalogue's current name and price, asked in one lookup.

        For lines that move (a guest's, at a merge): best effort, never a refusal. A line keeps
        what it had where the catalogue cannot say (down, unknown SKU) and where staff or a
        service set the price.
        """
        wanted = {ln.sku for ln in lines if ln.priced_by not in TRUSTED.values()}
        if self.catalog is None or not wanted:
            return list(lines)
        try:
            products = await self.catalog.products(wanted)
        except CatalogUnavailable:
            return list(lines)
        return [
            msgspec.structs.replace(
                ln,
                title=p.title,
                unit_price=p.unit_price,
                currency=p.currency,
                image=p.image,
                priced=True,
                priced_by="catalog",
            )
            if ln.priced_by not in TRUSTED.values() and (p := products.get(ln.sku)) is not None
            else ln
            for ln in lines
        ]

    def _uncatalogued(self, a: Asked, by: PricedBy) -> dict[str, Any]:
        """No catalogue answer: the caller's name and price, marked as theirs."""
        found: dict[str, Any] = {"priced": a.unit_price is not None}
        if a.title is not None:
            found["title"] = a.title
        if a.unit_price is not None:
            found.update(unit_price=a.unit_price, currency=self.currency, priced_by=by)
        return found


def _from_catalog(product: Product, a: Asked, trusted: PricedBy | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": product.title,
        "unit_price": product.unit_price,
        "currency": product.currency,
        "priced": True,
        "priced_by": "catalog",
    }
    if product.image is not None:
        fields["image"] = product.image
    if trusted is not None:
        if a.title is not None:
            fields["title"] = a.title
        if a.unit_price is not None:
            fields.update(unit_price=a.unit_price, priced_by=trusted)
    return fields


@dataclass(frozen=True)
class Totals:
    subtotal: str
    item_count: int


_MONEY = Context(prec=28)


def cart_totals(lines: Sequence[Line], currency: str) -> Totals | None:
    """Subtotal and unit count, only when every line has a price in the cart's currency.

    A line without a currency (stored before lines recorded one) is in the cart's currency.
    """
    if not lines:
        return Totals(subtotal="0.00", item_count=0)
    # Arithmetic in a context of our own: decimal's default context lives in a context
    # variable, and every live socket's task would otherwise get (and keep) one (~0.7 KB).
    subtotal = _MONEY.create_decimal(0)
    for line in lines:
        if line.unit_price is None or (line.currency or currency) != currency:
            return None
        line_total = _MONEY.multiply(_MONEY.create_decimal(line.unit_price), line.qty)
        subtotal = _MONEY.add(subtotal, line_total)
    return Totals(subtotal=str(subtotal), item_count=sum(line.qty for line in lines))


def with_totals(cart: Cart) -> Cart:
    """``cart`` with ``subtotal`` and ``item_count`` recomputed from its lines."""
    totals = cart_totals(cart.lines, cart.currency)
    return msgspec.structs.replace(
        cart,
        subtotal=totals.subtotal if totals else None,
        item_count=totals.item_count if totals else None,
    )
