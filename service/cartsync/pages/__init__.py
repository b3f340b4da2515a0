"""The pages the service serves itself (store tablet, shopper's phone), apart from the API."""

from cartsync.pages.routes import routes

__all__ = ["routes"]
