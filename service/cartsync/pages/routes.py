"""The pages' routes: two HTML documents, the shopper page's offline shell, and their files.

The pages talk to the service only through its public HTTP and websocket API (the JS client),
so nothing here imports the API adapter in ``cartsync.web``; the settings say how staff sign in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cartsync.settings import Settings

STATIC = Path(__file__).parent / "static"


def _headers(connect_to: str = "", framed_by: tuple[str, ...] = ()) -> dict[str, str]:
    """Everything the pages load comes from this service, and the websocket goes back to it.

    Images may also come from any https origin: the catalogue's pictures live on the shop's
    CDN, and an image can run nothing. ``connect_to`` adds the staff identity provider, whose
    discovery document and token endpoint the tablet page calls itself. ``framed_by`` are the
    shop's app origins that may embed the page (the shopper page's postMessage hand-over).
    """
    ancestors = " ".join(framed_by) or "'none'"
    return {
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data: https:; style-src 'self'; "
            f"connect-src 'self' ws: wss:{connect_to}; frame-ancestors {ancestors}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def page(
    name: str, connect_to: str = "", framed_by: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[Response]]:
    headers = _headers(connect_to, framed_by)

    async def serve(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers=headers)

    return serve


async def service_worker(request: Request) -> Response:
    """The shopper page's offline shell, at the root so that its scope covers ``/demo``."""
    headers = {**_headers(), "Content-Type": "text/javascript; charset=utf-8"}
    return FileResponse(STATIC / "sw.js", headers=headers)


def staff_sign_in(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """How the tablet page signs staff in: the provider to send them to, and the idle limit."""
    provider = (
        {
            "issuer": settings.staff_signin_issuer,
            "client_id": settings.staff_signin_client_id,
            "offline_access": settings.staff_signin_offline_access,
        }
        if settings.staff_signin_issuer
        else None
    )
    body = {"provider": provider, "idle_seconds": settings.staff_idle_s}

    async def serve(request: Request) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    return serve


def host_hand_over(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """Which of the shop's app origins may post the shopper page its token (none: no one)."""
    body = {"host_origins": list(settings.pages_host_origins)}

    async def serve(request: Request) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    return serve


def static_files() -> StaticFiles:
    # static/cartsync.js is a link to the JS client's one source (clients/js/src); Starlette
    # refuses files whose real path leaves the folder unless told to follow links. A request
    # path still cannot climb out: "..", once resolved, must stay under the folder.
    return StaticFiles(directory=STATIC, check_dir=False, follow_symlink=True)


def routes(settings: Settings) -> list[BaseRoute]:
    """``/staff`` (the store tablet) and how it signs in, ``/demo`` (the shopper's page), the
    the app origins that may hand it a token, and its ``/sw.js``, ``/support`` (customer
    service, docs/support.md), and ``/static``."""
    issuer = urlsplit(settings.staff_signin_issuer or "")
    connect_to = f" {issuer.scheme}://{issuer.netloc}" if issuer.netloc else ""
    return [
        Route("/staff", page("staff.html", connect_to), methods=["GET"]),
        Route("/staff/sign-in.json", staff_sign_in(settings), methods=["GET"]),
        Route("/demo", page("demo.html", framed_by=settings.pages_host_origins), methods=["GET"]),
        Route("/demo/hand-over.json", host_hand_over(settings), methods=["GET"]),
        Route("/sw.js", service_worker, methods=["GET"]),
        Route("/support", page("support.html"), methods=["GET"]),
        Mount("/static", app=static_files(), name="static"),
    ]
