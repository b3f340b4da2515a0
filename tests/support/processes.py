"""Start and stop real redis-server and cartsync processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from cartsync.storage.keys import OwnerKeys

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SRC = ROOT / "service"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not on PATH; .ci/run installs it (apt-get install redis-server)"
        )
    return found


class RedisProcess:
    """A private redis-server in its own folder; it can be stopped and started on the same port."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.workdir / "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}"
                )
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        kill(self.proc)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def save_owner(self, owner: str) -> Callable[[], None]:
        """Save the owner's keys now; the returned call puts them back as they were.

        What a Sentinel failover does when the replica it promotes had not yet received the
        last changes: the owner is back at an earlier revision, and the next changes take the
        lost ones' revision numbers.
        """
        keys = OwnerKeys(owner).data_keys()
        with self.client() as r:
            saved = {k: (r.dump(k), r.pttl(k)) for k in keys if r.exists(k)}

        def restore() -> None:
            with self.client() as r:
                r.delete(*keys)
                for key, (blob, ttl) in saved.items():
                    r.restore(key, max(ttl, 0), blob)

        return restore

    def append_event(self, owner: str, type_: str, data: str = "{}") -> int:
        """Log and publish an event as a newer server would (next revision, this epoch), so a
        client meets a type it does not know; the revision it took."""
        keys = OwnerKeys(owner)
        script = """
        local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
        local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
        local event = string.format('{"rev":%d,"type":"%s","data":%s,', rev, ARGV[1], ARGV[2])
          .. '"actor":{"role":"service","id":"newer"},"at":"' .. ARGV[3]
          .. '","epoch":"' .. epoch .. '"}'
        redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
        redis.call('XADD', KEYS[2], string.format('%d-0', rev), 'e', event)
        redis.call('PUBLISH', KEYS[3], event)
        return rev
        """
        at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        with self.client() as r:
            rev = r.eval(script, 3, keys.meta, keys.log, keys.channel, type_, data, at)
        return int(rev)


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server (no shutdown save, like a crash) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


TEST_SECRET = "test-kid:" + "s3cr3t-for-tests-only-" + "x" * 24


def service_env(redis_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")}
    env.update(
        {
            "PYTHONPATH": str(SERVICE_SRC),
            "CARTSYNC_REDIS_URL": redis_url,
            "CARTSYNC_DATA_DIR": str(data_dir),
            "CARTSYNC_JWT_SECRETS": TEST_SECRET,
            "CARTSYNC_RATE_LIMIT": "100000/second",
            "CARTSYNC_GUEST_ISSUE_RATE_LIMIT": "100000/minute",
            "CARTSYNC_CLAIM_RATE_LIMIT": "100000/minute",
        }
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """``python -m cartsync serve`` as a subprocess, the way an operator runs it."""

    def __init__(self, env: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        # /metrics is served on its own port; a copy, since callers share one env between
        # several instances.
        self.env = {"CARTSYNC_METRICS_PORT": str(free_port()), **env}
        self.metrics_port = int(self.env["CARTSYNC_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(env["CARTSYNC_DATA_DIR"]) / f"service-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """The private metrics port's /metrics (never on the API port)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, *, wait_ready: bool = True) -> ServiceProcess:
        Path(self.env["CARTSYNC_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cartsync", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        probe = "/readyz" if wait_ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cartsync exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + probe, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"cartsync did not become ready within 30 s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code: int | None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=5)
        else:
            code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
