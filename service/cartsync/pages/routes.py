"""The pages' routes: two HTML documents and the folder of their files, with a strict CSP.

The pages talk to the service only through its public HTTP and websocket API (the JS client),
so nothing here imports the API adapter in ``cartsync.web``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# Everything the pages load comes from this service; the websocket goes back to it too. Images
# may also come from any https origin: the catalogue's pictures live on the shop's CDN, and an
# image can run nothing (scripts, styles and connections stay 'self').
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers=_HEADERS)

    return serve


async def service_worker(request: Request) -> Response:
    """The shopper page's offline shell, at the root so that its scope covers ``/demo``."""
    headers = {**_HEADERS, "Content-Type": "text/javascript; charset=utf-8"}
    return FileResponse(STATIC / "sw.js", headers=headers)


def static_files() -> StaticFiles:
    # static/cartsync.js is a link to the JS client's one source (clients/js/src); Starlette
    # refuses files whose real path leaves the folder unless told to follow links. A request
    # path still cannot climb out: "..", once resolved, must stay under the folder.
    return StaticFiles(directory=STATIC, check_dir=False, follow_symlink=True)


def routes() -> list[BaseRoute]:
    """``/staff`` (the store tablet), ``/demo`` (the shopper's phone), ``/support`` (customer
    service, docs/support.md) and ``/static``."""
    return [
        Route("/staff", page("staff.html"), methods=["GET"]),
        Route("/demo", page("demo.html"), methods=["GET"]),
        Route("/sw.js", service_worker, methods=["GET"]),
        Route("/support", page("support.html"), methods=["GET"]),
        Mount("/static", app=static_files(), name="static"),
    ]
