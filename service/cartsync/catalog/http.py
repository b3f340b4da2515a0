"""``HttpCatalog``: the plain JSON product endpoint of docs/catalogue.md, batched and cached.

``GET <url>?sku=A&sku=B`` answers ``{"products": [{"sku", "title", "unit_price", "currency",
"image"?}]}``; an SKU the answer leaves out is unknown. Answers (unknown SKUs too) are cached
for ``cache_ttl_s``, so a busy cart page asks the catalogue once per product per TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Annotated

import httpx
import msgspec
from cachetools import TTLCache
from msgspec import Meta, Struct

from cartsync.catalog.breaker import Breaker
from cartsync.domain.pricing import Product
from cartsync.errors import CatalogUnavailable

log = logging.getLogger("cartsync.catalog")

BATCH = 50
"""SKUs per request: keeps the URL well under the 8 KiB that proxies commonly accept."""


class _Product(Struct, kw_only=True):
    sku: str
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    unit_price: Annotated[str, Meta(pattern=r"^\d{1,9}(\.\d{1,4})?$(?!\n)")]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)")]
    image: Annotated[str, Meta(pattern=r"^https?://", max_length=2048)] | None = None


class _Answer(Struct):
    products: list[_Product]


_decoder = msgspec.json.Decoder(_Answer)


class HttpCatalog:
    """The ``Catalog`` port over the app's one outbound httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        timeout_s: float,
        cache_ttl_s: float,
        breaker: Breaker,
        cache_size: int = 100_000,
    ) -> None:
        self._http = http
        self._url = url
        self._timeout = httpx.Timeout(timeout_s)
        self._cache: TTLCache[str, Product | None] = TTLCache(cache_size, cache_ttl_s)
        self.breaker = breaker

    async def products(self, skus: Collection[str]) -> dict[str, Product]:
        found: dict[str, Product] = {}
        missing: list[str] = []
        for sku in sorted(set(skus)):
            if sku in self._cache:
                product = self._cache[sku]
                if product is not None:
                    found[sku] = product
            else:
                missing.append(sku)
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            fetched = await self._fetch(chunk)
            for sku in chunk:
                self._cache[sku] = fetched.get(sku)
                if sku in fetched:
                    found[sku] = fetched[sku]
        return found

    async def _fetch(self, skus: list[str]) -> dict[str, Product]:
        if not self.breaker.allow():
            raise CatalogUnavailable("the shop's catalogue is unavailable; try again shortly")
        try:
            r = await self._http.get(
                self._url, params=[("sku", s) for s in skus], timeout=self._timeout
            )
            if r.status_code != 200:
                raise _Wrong(f"answered HTTP {r.status_code}")
            answer = _decoder.decode(r.content)
        except (httpx.HTTPError, _Wrong, msgspec.DecodeError, UnicodeDecodeError) as exc:
            self.breaker.failed()
            reason = "timed out" if isinstance(exc, httpx.TimeoutException) else str(exc)
            log.warning("catalogue lookup of %d SKUs failed: %s", len(skus), reason)
            raise CatalogUnavailable(
                "the shop's catalogue could not price the line; try again shortly"
            ) from exc
        except BaseException:
            self.breaker.abandoned()  # cancelled: a half-open trial must not stay taken
            raise
        self.breaker.succeeded()
        asked = set(skus)
        return {
            p.sku: Product(p.sku, p.title, p.unit_price, p.currency, p.image)
            for p in answer.products
            if p.sku in asked
        }


class _Wrong(Exception):
    """The catalogue answered, but not as documented."""
