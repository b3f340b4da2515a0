"""cartsync: carts and wishlists kept in sync across a shopper's devices and the shop floor."""

__version__ = "0.1.0"
