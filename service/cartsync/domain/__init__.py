"""Pure rules of carts and wishlists: no Redis, no HTTP, no tokens."""
