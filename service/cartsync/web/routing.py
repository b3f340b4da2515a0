"""Starlette's router, with the route a request takes found among a few candidates.

Starlette tries every route in order; with ~70 routes, a cart mutation was matched against
~22 path patterns first, 40 µs of CPU per request. A route can only match paths that begin
with the literal text before its first ``{param}``, so routes are indexed by the first two
path segments that text fixes; a request tries, in the same order as before, only the routes
indexed under its own first two segments and those that fix fewer. Any request that none of
them fully matches (405, 404, websockets) goes through Starlette's own loop unchanged.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

Segments = tuple[str, ...]


def fixed_segments(route: BaseRoute) -> Segments:
    """The first (at most two) path segments of every path the route can match."""
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path.startswith("/"):
        return ()
    if isinstance(route, Mount):
        literal = path + "/"  # a mount matches its path followed by anything
    elif "{" in path:
        literal = path[: path.index("{")]
    else:
        literal = path + "/"  # the whole path is literal: its last segment is complete
    return tuple(literal.split("/")[1:-1][:2])  # the last part, not followed by "/", may go on


def literal_path(route: BaseRoute) -> str | None:
    """The one path a route without parameters matches (a ``Route``'s, not a mount's)."""
    path = getattr(route, "path", None)
    if type(route) is Route and isinstance(path, str) and "{" not in path:
        return path
    return None


Candidate = tuple[BaseRoute, str | None]
"""A route, and the one path it matches if it has no parameters."""


class IndexedRouter(Router):
    """``Router`` whose HTTP requests skip the routes that cannot match their path."""

    _indexed_count = -1
    _by_two: dict[Segments, list[Candidate]]
    _by_one: dict[str, list[Candidate]]
    _anywhere: list[Candidate]

    def _index(self) -> None:
        fixed = [(route, fixed_segments(route)) for route in self.routes]

        def fitting(segments: Segments) -> list[Candidate]:
            return [(route, literal_path(route)) for route, f in fixed if f == segments[: len(f)]]

        self._by_two = {f: fitting(f) for _, f in fixed if len(f) == 2}
        self._by_one = {f[0]: fitting(f[:1]) for _, f in fixed if f}
        self._anywhere = fitting(())
        self._indexed_count = len(self.routes)

    def _candidates(self, path: str) -> list[Candidate]:
        """The routes, in order, that can match ``path``: the others' literal text differs."""
        parts = path.split("/", 3)
        if len(parts) >= 3:
            found = self._by_two.get((parts[1], parts[2]))
            if found is not None:
                return found
        return self._by_one.get(parts[1], self._anywhere) if len(parts) >= 2 else self._anywhere

    def find(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        """The route Starlette's loop would take and its child scope, found among the
        candidates; None where that loop must decide (no full match, or see below)."""
        path = get_route_path(scope)
        if path.endswith("\n"):
            return None  # a pattern's ``$`` also matches before a trailing newline (%0A)
        if self._indexed_count != len(self.routes):  # a route was added since
            self._index()
        for route, literal in self._candidates(path):
            if literal is not None and literal != path:
                continue  # a path without parameters matches only itself
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
        return None

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.find(scope) if scope["type"] == "http" else None
        if found is None:
            await super().app(scope, receive, send)
            return
        route, child_scope = found
        scope.setdefault("router", self)
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)
