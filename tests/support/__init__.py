"""Real processes for the test suite: redis-server and cartsync itself, on free loopback ports."""
