"""A shop's app on a loopback origin of its own: pages that embed or open the shopper page.

The shopper page takes a token by postMessage only from the origins the shop listed; a second
instance on another port is a stranger whose messages it must ignore.
"""

from __future__ import annotations

from tests.support.loopback import LoopbackServer, QuietHandler


class HostApp(LoopbackServer):
    """Serves ``pages`` (path -> HTML) at ``origin``; any other path is a 404."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.origin = f"http://127.0.0.1:{self.port}"
        self.pages: dict[str, str] = {}

    def handler(self) -> type[QuietHandler]:
        host = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                page = host.pages.get(self.path)
                if page is None:
                    self.send_error(404)
                    return
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
