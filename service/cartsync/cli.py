"""The ``cartsync`` command: ``serve`` runs the service, ``worker`` delivers back-office events
(``events`` lists dead letters and replays), ``token`` signs a token for local use."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from starlette.datastructures import Secret

from cartsync import __version__
from cartsync.auth.tokens import DEV_KEY_FILE, TokenIssuer, TokenKeys
from cartsync.domain.principal import Role
from cartsync.events.cli import add_commands as add_event_commands
from cartsync.events.runner import webhook_endpoints
from cartsync.settings import Settings, SettingsError

DEFAULT_TOKEN_TTL_S = 24 * 3600
DATA_DIR_VARIABLE = "CARTSYNC_DATA_DIR"
WORKER_STOP_S = 30.0
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
"""Each worker of ``serve --workers N`` listens on a socket of its own and Linux spreads new
connections over them; elsewhere SO_REUSEPORT does not balance, so the workers share one."""
"""Longest wait for the workers of ``serve --workers N`` after SIGTERM (each drains in 10 s)."""
DEFAULT_DATA_DIR = Settings().data_dir


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, read CARTSYNC_* settings and run the chosen command."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: return rather than exit
        return int(exc.code or 0)
    if args.command in ("serve", "worker"):  # messages in the format their logs will use
        _LOG["json"] = os.environ.get("CARTSYNC_LOG_FORMAT", "json") != "text"
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            if args.workers < 1:
                _say("--workers must be at least 1", fatal=True)
                return 2
            return _serve(
                settings,
                host=args.host,
                port=args.port,
                workers=args.workers,
                inherited=(args.listen_fd, args.metrics_fd),
                reuse_port=args.reuse_port,
            )
        if args.command in ("worker", "events"):
            from cartsync.events import cli as events_cli
            from cartsync.web import logs, tracing

            logs.configure(settings.log_format, settings.log_level)
            with tracing.enabled():  # webhook deliveries carry a traceparent when on
                return events_cli.run(settings, args)
        data_dir_named = bool(os.environ.get(DATA_DIR_VARIABLE))
        return _token(
            settings,
            args.role,
            args.subject,
            store=args.store,
            ttl_s=args.ttl,
            data_dir_named=data_dir_named,
        )
    except SettingsError as exc:
        _say(str(exc), fatal=True)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartsync", description="Carts and wishlists kept in sync, in Redis."
    )
    parser.add_argument("--version", action="version", version=f"cartsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP and websocket service")
    serve.add_argument("--host", help="address to listen on (default: CARTSYNC_HOST or 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on (default: CARTSYNC_PORT or 8000)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port, each with its own event hub (default: 1)",
    )
    # A worker of `serve --workers N` gets its sockets by descriptor from the supervisor.
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--metrics-fd", type=int, help=argparse.SUPPRESS)
    # ... or binds its own listening socket to the port, beside the others (REUSE_PORT).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    add_event_commands(commands)

    token = commands.add_parser("token", help="print a signed token, for trying the API locally")
    token.add_argument(
        "role",
        choices=[role.value for role in Role],
        metavar="ROLE",
        help="customer, guest, staff or service",
    )
    token.add_argument(
        "subject", metavar="SUBJECT", help="customer id, guest id, staff or service name"
    )
    token.add_argument("--store", help="the staff member's store (required for staff)")
    token.add_argument(
        "--ttl",
        type=int,
        metavar="SECONDS",
        help="lifetime (default: 24 h; guests: CARTSYNC_GUEST_TOKEN_TTL_SECONDS)",
    )
    return parser


def _token(
    settings: Settings,
    role_name: str,
    subject: str,
    *,
    store: str | None,
    ttl_s: int | None,
    data_dir_named: bool,
) -> int:
    """Print a token signed with the keys the service verifies with, and say which on stderr."""
    role = Role(role_name)
    if ttl_s is None:
        ttl_s = settings.guest_token_ttl_s if role is Role.GUEST else DEFAULT_TOKEN_TTL_S
    try:
        keys, source = _signing_keys(settings, data_dir_named=data_dir_named)
        token = TokenIssuer(keys, settings).issue(role, subject, store=store, ttl_s=ttl_s)
    except (ValueError, _NoDevelopmentSecret) as exc:  # a bad subject, store or ttl; JWKS only
        print(f"cartsync token: {exc}", file=sys.stderr)
        return 2
    print(f"cartsync token: signed with {source}", file=sys.stderr)
    sys.stdout.write(token + "\n")
    return 0


class _NoDevelopmentSecret(Exception):
    """No data folder with a development secret here or above, and none was named."""


def _signing_keys(settings: Settings, *, data_dir_named: bool) -> tuple[TokenKeys, str]:
    """The service's keys and where they come from (never the secret itself).

    A token signed with a secret the service does not have fails as "bad signature", so the
    CLI never makes a development secret in a folder nobody named: without CARTSYNC_DATA_DIR
    it looks for the default data folder in the working directory and then its parents, the
    way git finds its repository, and refuses when there is none.
    """
    if settings.jwt_secrets or settings.jwt_jwks_file is not None:
        keys = TokenKeys.from_settings(settings)
        return keys, f"key {keys.signing_kid!r}, the first of CARTSYNC_JWT_SECRETS"
    if data_dir_named:
        secret = (settings.data_dir / DEV_KEY_FILE).resolve()
        existed = secret.is_file()
        keys = TokenKeys.from_settings(settings)
        if existed:
            return keys, f"the development secret in {secret}"
        return keys, (
            f"a new development secret, just created in {secret}; only a service started "
            f"with the same {DATA_DIR_VARIABLE} accepts it"
        )
    data_dir = _find_data_dir(DEFAULT_DATA_DIR, Path.cwd())
    if data_dir is None:
        raise _NoDevelopmentSecret(
            f"no {DEFAULT_DATA_DIR / DEV_KEY_FILE} in {Path.cwd()} or any folder above it. "
            "The service makes its development secret in its data folder on first start "
            f"({DEFAULT_DATA_DIR} in the folder `cartsync serve` runs in, or {DATA_DIR_VARIABLE}). "
            f"Run this command in that folder, or set {DATA_DIR_VARIABLE} to the service's "
            "data folder (a new secret is made there if it has none)."
        )
    keys = TokenKeys.from_settings(replace(settings, data_dir=data_dir))
    return keys, f"the development secret in {(data_dir / DEV_KEY_FILE).resolve()}"


def _find_data_dir(name: Path, start: Path) -> Path | None:
    """The nearest ``<folder>/<name>`` holding a development secret, from start upwards."""
    for folder in (start, *start.parents):
        if (folder / name / DEV_KEY_FILE).is_file():
            return folder / name
    return None


def _serve(
    settings: Settings,
    *,
    host: str | None,
    port: int | None,
    workers: int = 1,
    inherited: tuple[int | None, int | None] = (None, None),
    reuse_port: bool = False,
) -> int:
    """Run the service until SIGTERM or SIGINT, with an embedded Redis if none is configured."""
    settings = replace(
        settings,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
    )
    settings.check()
    from cartsync.web import logs, tracing

    logs.configure(settings.log_format, settings.log_level)
    _LOG["json"] = settings.log_format == "json"
    tracing.require()  # OTEL_* set without the otel extra: exit 2 now, not a traceback later
    if settings.worker == "embedded":
        webhook_endpoints(settings)  # a bad webhooks file stops start-up (exit 2)
    if TokenKeys.from_settings(settings).development:
        _say(
            "WARNING: no CARTSYNC_JWT_SECRETS or CARTSYNC_JWT_JWKS_FILE set; tokens are signed "
            f"with a development secret kept in {(settings.data_dir / DEV_KEY_FILE).resolve()}."
            " Never run like this in production."
        )
    from cartsync.storage.embedded import EmbeddedRedisError

    address = _address(settings.host, settings.port)
    listen_fd, metrics_fd = inherited
    if listen_fd is not None or reuse_port:  # a worker of `serve --workers N`
        if listen_fd is not None:
            listener = socket.socket(fileno=listen_fd)
        else:
            try:
                listener = _bind(settings.host, settings.port, reuse_port=True)
            except OSError as exc:
                _say(f"cannot listen on {address}: {exc.strerror or exc}", fatal=True)
                return 1
        metrics_listener = None if metrics_fd is None else socket.socket(fileno=metrics_fd)
        return _serve_on(settings, listener, address, metrics_listener)
    try:
        # With several workers on Linux this socket only holds the port: never listened on,
        # it takes no connection, while each worker binds and listens on its own.
        listener = _bind(settings.host, settings.port, reuse_port=workers > 1 and REUSE_PORT)
    except OSError as exc:
        _say(f"cannot listen on {address}: {exc.strerror or exc}", fatal=True)
        return 1
    metrics_listener = None
    if settings.metrics_port:
        try:
            metrics_listener = _bind(settings.host, settings.metrics_port)
        except OSError as exc:
            listener.close()
            where = _address(settings.host, settings.metrics_port)
            _say(
                f"cannot listen on {where} (CARTSYNC_METRICS_PORT): {exc.strerror or exc}",
                fatal=True,
            )
            return 1
    if workers > 1:
        try:
            return asyncio.run(_supervise(settings, workers, listener, metrics_listener))
        except EmbeddedRedisError as exc:
            _say(str(exc), fatal=True)
            return 1
        finally:
            listener.close()
            if metrics_listener is not None:
                metrics_listener.close()
    return _serve_on(settings, listener, address, metrics_listener)


def _serve_on(
    settings: Settings,
    listener: socket.socket,
    address: str,
    metrics_listener: socket.socket | None,
) -> int:
    from cartsync.storage.embedded import EmbeddedRedisError

    try:
        asyncio.run(_run(settings, listener, address, metrics_listener))
    except EmbeddedRedisError as exc:
        _say(str(exc), fatal=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    finally:
        listener.close()  # a no-op once Hypercorn has taken the socket over
        if metrics_listener is not None:
            metrics_listener.close()
    return 0


async def _supervise(
    settings: Settings,
    workers: int,
    listener: socket.socket,
    metrics_listener: socket.socket | None,
) -> int:
    """Run ``workers`` serve processes on one port until SIGTERM or SIGINT.

    Each worker is a whole service (its own event hub, pub/sub and timer wheel). On Linux each
    listens on a socket of its own (SO_REUSEPORT) and the kernel spreads connections over them
    by address: from one shared socket, the worker that woke first took every pending
    connection (asyncio accepts in a loop), and one worker sometimes got nearly all of the
    benchmark's 32. Elsewhere they accept from the shared socket. Until a worker has started, its
    share of new connections goes to the others; none is queued on a socket nobody accepts
    from. SIGTERM is passed on, so each drains its own live sockets (1001).
    The embedded redis-server, when used, is started here once and outlives the workers.
    Only the first worker serves /metrics: one port cannot be scraped per process.
    """
    from cartsync.storage.embedded import EmbeddedRedis

    env = dict(os.environ)
    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url is None and not settings.redis_sentinels:
            url = await stack.enter_async_context(EmbeddedRedis(settings.data_dir))
            env["CARTSYNC_REDIS_URL"] = url
            _say(f"using embedded redis-server at {_where(url)} for {workers} workers")
        port = listener.getsockname()[1]  # the one bound, should CARTSYNC_PORT be 0
        base = [sys.executable, "-m", "cartsync", "serve"]
        base += ["--host", settings.host, "--port", str(port)]
        shared: list[int] = []
        if REUSE_PORT:
            base += ["--reuse-port"]
        else:
            listener.listen(4096)  # before the first worker: no connection is refused meanwhile
            base += ["--listen-fd", str(listener.fileno())]
            shared.append(listener.fileno())
        children: list[asyncio.subprocess.Process] = []
        for index in range(workers):
            args, fds = list(base), list(shared)
            if index == 0 and metrics_listener is not None:
                args += ["--metrics-fd", str(metrics_listener.fileno())]
                fds.append(metrics_listener.fileno())
            own = env if index == 0 else env | {"CARTSYNC_METRICS_PORT": "0"}
            children.append(await asyncio.create_subprocess_exec(*args, env=own, pass_fds=fds))

        signalled: list[int] = []

        def forward(signum: int) -> None:
            signalled.append(signum)
            for child in children:
                if child.returncode is None:
                    child.send_signal(signum)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, forward, signum)
        waits = [asyncio.create_task(child.wait()) for child in children]
        # One worker ending (crash or signal) ends the others: a half-sized service would
        # look healthy to a load balancer while it turns a share of connections away.
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not signalled:  # a second SIGTERM would kill a worker that is already draining
            forward(signal.SIGTERM)
        await asyncio.wait(waits, timeout=WORKER_STOP_S)
        for child in children:
            if child.returncode is None:  # past its own graceful timeout: it will not drain
                child.kill()
        codes = [await child.wait() for child in children]
    return 0 if all(code == 0 for code in codes) else 1


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """Bind first: a taken port fails before Redis starts, and "listening" is then true."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


async def _run(
    settings: Settings,
    listener: socket.socket,
    address: str,
    metrics_listener: socket.socket | None,
) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from hypercorn.typing import ASGIFramework

    from cartsync.storage.embedded import EmbeddedRedis
    from cartsync.web import hypercorn_hooks, logs, tracing
    from cartsync.web.app import create_app
    from cartsync.web.metrics import metrics_app

    hypercorn_hooks.install(settings.ws_compression, max_message=hypercorn_hooks.MAX_MESSAGE)

    shutdown = asyncio.Event()
    apps: list[Any] = []

    def stop() -> None:
        # Live sockets close first with 1001, so their clients reconnect to another instance
        # while Hypercorn stops accepting and finishes in-flight requests.
        for app in apps:
            services = getattr(app.state, "services", None)
            if services is not None:
                services.drain()
        shutdown.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)

    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url is None and not settings.redis_sentinels:
            url = await stack.enter_async_context(EmbeddedRedis(settings.data_dir))
            settings = replace(settings, redis_url=Secret(url))
            _say(
                f"using embedded redis-server at {_where(url)}, "
                f"data in {(settings.data_dir / 'redis').resolve()}"
            )
        elif settings.redis_sentinels:
            _say(
                f"using Redis master {settings.redis_sentinel_master!r} from sentinels "
                + ", ".join(settings.redis_sentinels)
            )
        else:
            kind = "Redis Cluster seed" if settings.redis_cluster else "Redis"
            _say(f"using {kind} at {_where(str(settings.redis_url))}")
        stack.enter_context(tracing.enabled())  # OTEL_* variables; off unless they say so
        app = create_app(settings)
        apps.append(app)

        config = Config()
        # Hypercorn adopts the bound socket by descriptor and closes it when it stops.
        config.bind = [f"fd://{listener.detach()}"]
        config.websocket_max_message_size = hypercorn_hooks.MAX_MESSAGE  # larger: close 1009
        # No websocket_ping_interval: Hypercorn 0.18's ping task outlives a closed socket and
        # holds its connection until graceful_timeout; live.py sends its own pings instead.
        config.keep_alive_max_requests = 100_000  # the default 1,000 drops busy clients' sockets
        config.graceful_timeout = 10.0
        config.accesslog = None
        config.errorlog = logs.server_logger(settings.log_format)

        print(f"cartsync listening on http://{address}", flush=True)
        # Starlette's ASGI types and Hypercorn's TypedDicts describe the same protocol.
        served = cast(ASGIFramework, tracing.asgi(app))
        servers = [serve(served, config, shutdown_trigger=shutdown.wait)]
        if metrics_listener is not None:
            private = Config()
            private.bind = [f"fd://{metrics_listener.detach()}"]
            private.accesslog = None
            private.errorlog = config.errorlog
            scraped = metrics_app(app.state.metrics)
            servers.append(
                serve(cast(ASGIFramework, scraped), private, shutdown_trigger=shutdown.wait)
            )
            where = _address(settings.host, settings.metrics_port)
            _say(f"metrics on http://{where}/metrics")
        await asyncio.gather(*servers)


def _where(url: str) -> str:
    """host:port of a Redis URL, leaving out any user name and password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
    except ValueError:
        return "(unparsable CARTSYNC_REDIS_URL)"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LOG = {"json": False}
"""Whether ``serve`` writes its messages as JSON log lines (CARTSYNC_LOG_FORMAT=json)."""


def _say(message: str, *, fatal: bool = False) -> None:
    """A start-up message on stderr: a JSON log line under ``serve`` in JSON, else plain;
    ``fatal`` (the process stops because of it) logs at ERROR."""
    if _LOG["json"]:
        from cartsync.web import logs

        logs.say(message, logging.ERROR if fatal else logging.INFO)
        return
    print(f"cartsync: {message}", file=sys.stderr, flush=True)
