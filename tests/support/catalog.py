"""A shop's product catalogue on loopback, in the shape docs/catalogue.md documents.

``GET /products?sku=A&sku=B`` answers ``{"products": [...]}`` for the SKUs it knows. A test can
make it slow, answer errors or the wrong shape, or take it down, and counts what it was asked.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer, QuietHandler

Behaviour = Literal["ok", "slow", "error", "wrong-shape", "not-json", "bad-price"]


class Catalogue(LoopbackServer):
    """Products by SKU; ``asked`` holds the SKUs of every request, in order."""

    def __init__(self, *, port: int | None = None) -> None:
        super().__init__(port)
        self.products: dict[str, dict[str, Any]] = {}
        self.asked: list[list[str]] = []
        self.behaviour: Behaviour = "ok"
        self.delay_s = 2.0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/products"

    def add(
        self, sku: str, title: str, unit_price: str, currency: str = "EUR", image: str | None = None
    ) -> None:
        product = {"sku": sku, "title": title, "unit_price": unit_price, "currency": currency}
        if image is not None:
            product["image"] = image
        self.products[sku] = product

    def requests_for(self, sku: str) -> int:
        with self._lock:
            return sum(sku in skus for skus in self.asked)

    def _answer(self, skus: list[str]) -> tuple[int, bytes]:
        with self._lock:
            self.asked.append(skus)
        known = [self.products[s] for s in skus if s in self.products]
        if self.behaviour == "slow":
            time.sleep(self.delay_s)
        if self.behaviour == "error":
            return 500, b'{"message": "internal error"}'
        if self.behaviour == "not-json":
            return 200, b"<html><body>Maintenance</body></html>"
        if self.behaviour == "wrong-shape":
            return 200, json.dumps({"items": known}).encode()
        if self.behaviour == "bad-price":
            known = [{**p, "unit_price": float(p["unit_price"])} for p in known]
        return 200, json.dumps({"products": known}).encode()

    def handler(self) -> type[QuietHandler]:
        catalogue = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/products":
                    self.send_error(404)
                    return
                self.answer(*catalogue._answer(parse_qs(url.query).get("sku", [])))

        return Handler
