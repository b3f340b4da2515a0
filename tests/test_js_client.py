"""The JS client (clients/js) runs its own suite, ``node --test``, against real cartsync processes.

The suite gets tokens minted here, a service to use, one with a low rate limit, and one it may
stop and start (through a small HTTP control endpoint on loopback) to test its offline queue.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cartsync.domain.events import ALL
from tests.browser import node
from tests.conftest import Tokens
from tests.support.processes import ROOT, RedisProcess, ServiceProcess, service_env
from tests.support.stores import write_stores

JS_DIR = ROOT / "clients" / "js"
STATIC_DIR = ROOT / "service" / "cartsync" / "pages" / "static"
NODE_SUITE_TIMEOUT_S = 300
SHORT_TOKEN_TTL_S = 4


@pytest.fixture(scope="session")
def js_packages() -> Path:
    node.npm_ci(JS_DIR)
    return JS_DIR


async def test_the_pages_serve_the_client_source(client: httpx.AsyncClient) -> None:
    """/static/cartsync.js is clients/js/src/cartsync.js itself, not a copy that can drift."""
    answer = await client.get("/static/cartsync.js")
    assert answer.status_code == 200
    assert "javascript" in answer.headers["content-type"]
    assert answer.content == (JS_DIR / "src" / "cartsync.js").read_bytes()


def test_the_image_build_gets_the_client_source() -> None:
    """The served file is a link to the source: a build context without the source would give
    a wheel (and an image) without the file, silently."""
    link = STATIC_DIR / "cartsync.js"
    assert link.is_symlink(), "keep static/cartsync.js a link to clients/js/src/cartsync.js"
    target = link.resolve().relative_to(ROOT).as_posix()
    copied = [
        source.rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert any(target == c or target.startswith(c + "/") for c in copied), (target, copied)


def test_the_client_knows_every_event_type_of_the_service() -> None:
    """A type the service learns fails here until the JS client handles it."""
    program = (
        "import { EVENT_TYPES } from './clients/js/src/cartsync.js';"
        "console.log(JSON.stringify(EVENT_TYPES));"
    )
    code, output = node.run(
        ["--input-type=module", "-e", program], cwd=ROOT, env=dict(os.environ), timeout_s=60
    )
    assert code == 0, output
    assert sorted(json.loads(output)) == sorted(ALL)


def test_the_package_has_no_runtime_dependencies() -> None:
    package = json.loads((JS_DIR / "package.json").read_text())
    assert package["type"] == "module"
    assert "dependencies" not in package
    assert (JS_DIR / package["types"]).is_file()


@contextmanager
def running(env: dict[str, str]) -> Iterator[ServiceProcess]:
    service = ServiceProcess(env).start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def control_endpoint(
    service: ServiceProcess,
    redis: RedisProcess,
    rewound_owner: str,
    newer_owner: str,
    short_token: Callable[[], str],
) -> Iterator[str]:
    """``POST /stop`` and ``POST /start`` on a loopback port stop and start ``service``;
    ``POST /save`` and ``POST /rewind`` save ``rewound_owner``'s keys and put them back, as a
    failover that lost the changes made in between would; ``POST /unknown-event`` gives
    ``newer_owner`` an event of a type no client knows, as a newer server would;
    ``POST /short-token`` answers a token minted now that expires in a few seconds."""
    lock = threading.Lock()
    saved: list[Callable[[], None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                with lock:
                    if self.path == "/short-token":
                        self._answer(200, short_token())
                        return
                    if self.path == "/stop":
                        service.stop()
                    elif self.path == "/start":
                        if service.proc is None:
                            service.start()
                    elif self.path == "/save":
                        saved[:] = [redis.save_owner(rewound_owner)]
                    elif self.path == "/rewind" and saved:
                        saved.pop()()
                    elif self.path == "/unknown-event":
                        redis.append_event(newer_owner, "cart.gift_wrapped", '{"paper":"red"}')
                    else:
                        self._answer(
                            404,
                            "POST /stop, /start, /save, /rewind, /unknown-event or /short-token",
                        )
                        return
                self._answer(200, "ok")
            except Exception as exc:  # the JS test shows it; the thread must not die with it
                self._answer(500, repr(exc))

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="js-control", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def suite_ids() -> dict[str, str]:
    names = ("rest", "live", "off", "hand", "lost", "newer", "refresh")
    return {name: f"js-{name}-{uuid.uuid4().hex[:8]}" for name in names}


def refused(token: str) -> str:
    """The same claims with a signature the service refuses ("token has a bad signature")."""
    header, claims, signature = token.split(".")
    flipped = "A" if signature[10] != "A" else "B"
    return f"{header}.{claims}.{signature[:10]}{flipped}{signature[11:]}"


def suite_tokens(tokens: Tokens, ids: dict[str, str]) -> dict[str, str]:
    """One customer per JS test file, second devices of some, a staff member of store s1, and
    tokens the service refuses (for token providers to replace)."""
    return {
        "rest": tokens.token("customer", ids["rest"]),
        "live": tokens.token("customer", ids["live"]),
        "live-2": tokens.token("customer", ids["live"]),
        "offline": tokens.token("customer", ids["off"]),
        "handoff": tokens.token("customer", ids["hand"]),
        "lost": tokens.token("customer", ids["lost"]),
        "offline-refused": refused(tokens.token("customer", ids["off"])),
        "newer": tokens.token("customer", ids["newer"]),
        "refresh": tokens.token("customer", ids["refresh"]),
        "refresh-refused": refused(tokens.token("customer", ids["refresh"])),
        "staff": tokens.token("staff", f"staff-{uuid.uuid4().hex[:8]}", store="s1"),
        "support": tokens.token("support", f"agent-{uuid.uuid4().hex[:8]}"),
    }


@pytest.mark.timeout(NODE_SUITE_TIMEOUT_S + 120)
def test_js_client_suite(
    js_packages: Path, redis_server: RedisProcess, tokens: Tokens, tmp_path: Path
) -> None:
    ids = suite_ids()

    def env_for(name: str, **overrides: str) -> dict[str, str]:
        return service_env(redis_server.url, tmp_path / name, **overrides)

    def short_token() -> str:
        return tokens.token("customer", ids["off"], ttl_s=SHORT_TOKEN_TTL_S)

    with (
        running(env_for("main", CARTSYNC_STORES_FILE=str(write_stores(tmp_path)))) as main,
        running(env_for("limited", CARTSYNC_RATE_LIMIT="5/second")) as limited,
        # No clock leeway, so a token there is refused the moment it expires.
        running(env_for("restartable", CARTSYNC_JWT_LEEWAY_SECONDS="0")) as restartable,
        control_endpoint(
            restartable, redis_server, f"c:{ids['lost']}", f"c:{ids['newer']}", short_token
        ) as control_url,
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")},
            "CARTSYNC_URL": main.url,
            "CARTSYNC_TOKENS": json.dumps(suite_tokens(tokens, ids)),
            "CARTSYNC_LIMITED_URL": limited.url,
            "CARTSYNC_RESTARTABLE_URL": restartable.url,
            "CARTSYNC_CONTROL_URL": control_url,
        }
        code, output = node.run(
            ["--test", "clients/js/test/"], cwd=ROOT, env=env, timeout_s=NODE_SUITE_TIMEOUT_S
        )
        logs = {s.url: s.log()[-3000:] for s in (main, limited, restartable)}
    assert code == 0, f"node --test exited {code}:\n{output}\n\nservice logs (tails): {logs}"
