"""Redis adapter: key names, server-side scripts, the store, the embedded server."""
