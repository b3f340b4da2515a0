"""The shop's product catalogue over HTTP: the adapter of ``domain.pricing.Catalog``."""

from cartsync.catalog.breaker import Breaker
from cartsync.catalog.http import HttpCatalog

__all__ = ["Breaker", "HttpCatalog"]
