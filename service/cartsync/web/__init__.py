"""HTTP adapter: the Starlette app, its routes, and the one error-to-HTTP map."""
