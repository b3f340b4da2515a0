"""``cartsync worker`` and ``cartsync events dead|replay``."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from datetime import datetime
from typing import Any, cast

import msgspec

from cartsync.events.runner import build_worker, webhook_endpoints
from cartsync.settings import Settings, SettingsError
from cartsync.storage.outbox import Outbox

_FEED_ID = re.compile(r"0|\d+-\d+")


def add_commands(commands: Any) -> None:
    """Add the worker's and the dead-letter/replay commands to ``cartsync``'s parser."""
    worker = commands.add_parser(
        "worker", help="deliver back-office events to webhooks and the pull feed"
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics and /healthz (default: CARTSYNC_WORKER_METRICS_PORT; 0: none)",
    )
    events = commands.add_parser("events", help="dead letters and replays of back-office events")
    sub = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    dead = sub.add_parser("dead", help="list an endpoint's dead letters, one JSON per line")
    dead.add_argument("--endpoint", required=True, metavar="NAME")
    dead.add_argument("--limit", type=int, default=100)
    replay = sub.add_parser("replay", help="send an endpoint the feed's events again")
    replay.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="ID|TIME",
        help="a feed cursor (as GET /v1/events answers) or an ISO 8601 time",
    )
    replay.add_argument("--endpoint", required=True, metavar="NAME")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.redis_url is None and not settings.redis_sentinels:
        raise SettingsError(
            "the worker needs CARTSYNC_REDIS_URL or CARTSYNC_REDIS_SENTINELS (the Redis "
            "`cartsync serve` uses)"
        )
    endpoints = webhook_endpoints(settings)  # a bad file stops here, before Redis
    if args.command == "worker":
        port = settings.worker_metrics_port if args.metrics_port is None else args.metrics_port
        asyncio.run(_worker(settings, port))
        return 0
    names = {e.name: e for e in endpoints}
    if args.endpoint not in names:
        known = ", ".join(sorted(names)) or "none"
        raise SettingsError(f"no endpoint {args.endpoint!r} in CARTSYNC_WEBHOOKS_FILE ({known})")
    if args.events_command == "dead":
        return asyncio.run(_dead(settings, args.endpoint, args.limit))
    start = _cursor(args.start)
    types = names[args.endpoint].types
    return asyncio.run(_replay(settings, args.endpoint, start, types))


def _cursor(raw: str) -> str:
    if _FEED_ID.fullmatch(raw):
        return raw
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(f"--from {raw!r} is neither a feed cursor nor an ISO time") from exc
    if when.tzinfo is None:
        raise SettingsError(f"--from {raw!r} needs a time zone (Z or +hh:mm)")
    # The feed entry ids are milliseconds: the entries from that time on.
    return f"{int(when.timestamp() * 1000) - 1}-99999999"


async def _dead(settings: Settings, endpoint: str, limit: int) -> int:
    from cartsync.storage.connection import connect

    redis = connect(settings)
    try:
        rows = await Outbox(redis, settings.outbox_partitions).dead_letters(endpoint, limit)
    finally:
        await redis.aclose()
    for entry_id, fields in rows:
        event = msgspec.json.decode(fields.pop("event", "null") or "null")
        line = {"dead_letter_id": entry_id, **fields, "event": event}
        sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
    return 0


class _Owner(msgspec.Struct):
    owner: str
    type: str


async def _replay(settings: Settings, endpoint: str, start: str, types: Any) -> int:
    from cartsync.storage.connection import connect

    redis = connect(settings)
    outbox = Outbox(redis, settings.outbox_partitions)
    queued = 0
    try:
        cursor = start
        while True:
            rows = await outbox.read_feed(cursor, 500, None)
            if not rows:
                break
            picked = []
            for _, event in rows:
                head = msgspec.json.decode(event, type=_Owner)
                if types is None or head.type in types:
                    picked.append((head.owner, event))
            queued += await outbox.requeue(endpoint, picked)
            cursor = rows[-1][0]
    finally:
        await redis.aclose()
    print(f"cartsync events replay: {queued} events queued again for {endpoint}", file=sys.stderr)
    return 0


async def _worker(settings: Settings, metrics_port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from hypercorn.typing import ASGIFramework
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from cartsync.storage.connection import connect
    from cartsync.web import logs
    from cartsync.web.metrics import WorkerMetrics, runtime_registry

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    registry = runtime_registry()  # process_* and python_* too
    redis = connect(settings)
    worker = build_worker(redis, settings, WorkerMetrics(registry))
    logs.say(  # a JSON line under CARTSYNC_LOG_FORMAT=json, like every line of the worker
        f"cartsync worker {worker.consumer}: {len(worker.endpoints)} webhook endpoints, "
        f"{worker.outbox.partitions} outbox partitions"
    )
    tasks = [asyncio.create_task(worker.run(stop))]
    if metrics_port:
        from prometheus_client import generate_latest

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

        async def healthz(request: Request) -> Response:
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
        config = Config()
        config.bind = [f"{settings.host}:{metrics_port}"]
        config.accesslog = None
        config.errorlog = logs.server_logger(settings.log_format)
        tasks.append(
            asyncio.create_task(serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait))
        )
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await redis.aclose()
