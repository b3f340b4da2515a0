"""Webhook receivers on loopback (Starlette under Hypercorn) and ``cartsync worker`` processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.processes import ServiceProcess, free_port, service_env

SECRET = "whsec_" + base64.b64encode(b"cartsync-test-webhook-key-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"cartsync-old-webhook-key-9876543210").decode()

Behaviour = Callable[[int, dict[str, Any]], Any]
"""(attempt number of this event id, the event) -> a status code, or "hang"."""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP endpoint that verifies every delivery with the ``standardwebhooks`` package."""

    port: int
    secret: str = SECRET
    behaviour: Behaviour = lambda attempt, event: 204
    received: list[Received] = field(default_factory=list)
    """Deliveries it answered 2xx, in arrival order."""
    attempts: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    """Why a delivery failed verification (must stay empty)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            event = Webhook(self.secret).verify(body, headers)
        except Exception as exc:
            self.rejected.append(repr(exc))
            return Response(status_code=400)
        n = self.attempts[event["id"]] = self.attempts.get(event["id"], 0) + 1
        answer = self.behaviour(n, event)
        if answer == "hang":
            await asyncio.sleep(60)
            return Response(status_code=204)
        if 200 <= int(answer) < 300:
            self.received.append(Received(headers, body, event))
        return Response(status_code=int(answer))

    def ids(self) -> set[str]:
        return {r.event["id"] for r in self.received}

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r.event for r in self.received if r.event["type"] == type_]

    def by_owner(self) -> dict[str, list[dict[str, Any]]]:
        """Each owner's distinct events in first-arrival order."""
        seen: set[str] = set()
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.received:
            if r.event["id"] not in seen:
                seen.add(r.event["id"])
                out.setdefault(r.event["owner"], []).append(r.event)
        return out


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` on its port until the block ends."""
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    config = Config()
    config.bind = [f"127.0.0.1:{receiver.port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    try:
        yield receiver
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=5)


def webhooks_file(folder: Path, *endpoints: dict[str, Any]) -> Path:
    path = folder / "webhooks.json"
    path.write_text(json.dumps({"endpoints": list(endpoints)}))
    return path


def events_env(webhooks: Path | None = None, **overrides: str) -> dict[str, str]:
    """What a service and its workers need for fast back-office events in a test."""
    env = {
        "CARTSYNC_EVENTS": "true",
        "CARTSYNC_WORKER": "off",
        "CARTSYNC_WORKER_POLL_SECONDS": "0.1",
        "CARTSYNC_WORKER_VISIBILITY_SECONDS": "15",
        "CARTSYNC_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "CARTSYNC_WORKER_METRICS_PORT": "0",
    }
    if webhooks is not None:
        env["CARTSYNC_WEBHOOKS_FILE"] = str(webhooks)
    env.update(overrides)
    return env


class WorkerProcess:
    """``python -m cartsync worker``, the way an operator runs it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cartsync", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class ClusterTarget:
    """Where the suite's service and workers find Redis when it is a Cluster."""

    url: str
    cluster: bool = True


def target_env(redis: Any, folder: Path, env: dict[str, str]) -> dict[str, str]:
    """The full environment of a service or worker on ``redis`` (a RedisProcess or a
    ClusterTarget), with the test's own variables."""
    extra = {"CARTSYNC_REDIS_CLUSTER": "true"} if getattr(redis, "cluster", False) else {}
    return service_env(redis.url, folder / "service", **extra, **env)


def start_service(redis: Any, folder: Path, env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(target_env(redis, folder, env)).start()


def start_worker(redis: Any, folder: Path, env: dict[str, str], n: int = 0) -> WorkerProcess:
    (folder / "service").mkdir(exist_ok=True)
    return WorkerProcess(target_env(redis, folder, env), folder / f"worker-{n}.log").start()


__all__ = ["free_port"]
