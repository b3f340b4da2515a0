"""The indexed router sends every request to the route Starlette's own loop would pick."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from cartsync.settings import Settings
from cartsync.web.app import create_app
from cartsync.web.routing import IndexedRouter
from tests.support.processes import service_env

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def first_full(routes: list[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, Scope]:
    """What Starlette's loop picks: the first route that fully matches."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child
    return None, {}


def paths_of(routes: list[BaseRoute]) -> set[str]:
    """Each route's path with its parameters filled in several ways, and near misses."""
    found = {"", "/", "/v1", "/v1/", "//v1/cart", "/v1//cart", "/static/app.js", "/nowhere/x"}
    for route in routes:
        path = getattr(route, "path", "")
        for value in ("L1", "a-b", "", "x/y"):
            filled = re.sub(r"\{[^}]*\}", value, path)
            found |= {filled, filled + "/", filled + "/more", filled + "\n", filled.upper()}
    return found


async def ok(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def tricky() -> IndexedRouter:
    """Patterns that fix fewer segments than they seem to, in an order where that matters."""
    return IndexedRouter(
        [
            Route("/v1/{kind}/lines", ok, methods=["GET"]),
            Route("/v1/cart/lines", ok, methods=["POST", "GET"]),
            Route("/v1/ca{rest}/x", ok),
            Route("/{a}/{b}", ok, methods=["PUT"]),
            Route("/v1/cart/{line}", ok, methods=["PATCH"]),
            Mount("/v1/cart/static", routes=[Route("/{f}", ok)]),
            Mount("/v1", routes=[Route("/deep/{f}", ok)]),
            Route("/healthz", ok),
            Route("/{any:path}", ok, methods=["DELETE"]),
            Route("/{rest:path}", ok, methods=["GET"]),
        ]
    )


@pytest.fixture
def router(tmp_path: Path) -> IndexedRouter:
    app = create_app(Settings.from_env(service_env("redis://127.0.0.1:1/0", tmp_path)))
    assert isinstance(app.router, IndexedRouter)
    return app.router


@pytest.mark.parametrize("which", ["cartsync", "tricky"])
def test_every_request_finds_the_route_starlette_would(router: IndexedRouter, which: str) -> None:
    if which == "tricky":
        router = tricky()
    router._index()
    checked = 0
    for path in paths_of(router.routes):
        for method in METHODS:
            for root in ("", "/api"):
                scope = {"type": "http", "path": root + path, "method": method, "root_path": root}
                expected = first_full(router.routes, scope)
                found = router.find(scope)
                if found is not None:  # else Starlette's own loop decides
                    assert found[0] is expected[0], (path, method, root)
                    assert found[1] == expected[1]
                    checked += 1
    assert checked > 200


def test_a_mutation_is_routed_without_starlettes_loop(router: IndexedRouter) -> None:
    for method, path in (("POST", "/v1/cart/lines"), ("PATCH", "/v1/cart/lines/L1")):
        found = router.find({"type": "http", "path": path, "method": method, "root_path": ""})
        assert found is not None
        assert getattr(found[0], "path", None) == path.replace("L1", "{line_id}")


async def test_a_route_added_later_is_found(router: IndexedRouter) -> None:
    router.routes.append(Route("/v1/late/{x}", ok, methods=["GET"]))
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/late/1",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    await router.app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"ok"
