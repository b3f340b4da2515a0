"""The ``cartsync`` command, run as people run it: a real process, a real embedded redis-server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from cartsync.auth.tokens import TokenKeys, TokenVerifier
from cartsync.domain.principal import Principal, Role
from cartsync.settings import Settings

SERVICE_SRC = Path(__file__).parents[1] / "service"


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus any CARTSYNC_* setting, plus a private data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")}
    env.update(PYTHONPATH=str(SERVICE_SRC), CARTSYNC_DATA_DIR=str(data_dir), **extra)
    return env


def cartsync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartsync", *args],
        env=cli_env(tmp_path / "data"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_verifies_with_the_same_settings(tmp_path: Path) -> None:
    done = cartsync(tmp_path, "token", "customer", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")
    assert done.stdout.count("\n") == 1

    settings = Settings.from_env({"CARTSYNC_DATA_DIR": str(tmp_path / "data")})
    verifier = TokenVerifier(TokenKeys.from_settings(settings), settings)
    assert verifier.verify(done.stdout.strip()) == Principal(Role.CUSTOMER, "alice")


def test_staff_token_carries_its_store(tmp_path: Path) -> None:
    done = cartsync(tmp_path, "token", "staff", "clerk-1", "--store", "berlin-3", "--ttl", "60")
    assert done.returncode == 0, done.stderr
    settings = Settings.from_env({"CARTSYNC_DATA_DIR": str(tmp_path / "data")})
    verifier = TokenVerifier(TokenKeys.from_settings(settings), settings)
    assert verifier.verify(done.stdout.strip()) == Principal(Role.STAFF, "clerk-1", "berlin-3")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("token", "staff", "clerk-1"), "store"),
        (("token", "customer", "a{b}"), "subject"),
        (("token", "admin", "root"), "invalid choice"),
        (("token", "customer", "alice", "--ttl", "0"), "lifetime"),
    ],
)
def test_bad_token_requests_exit_2(tmp_path: Path, args: tuple[str, ...], complaint: str) -> None:
    done = cartsync(tmp_path, *args)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert done.stdout == ""


def test_malformed_settings_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cartsync", "token", "customer", "alice"],
        env=cli_env(tmp_path, CARTSYNC_JWT_SECRETS="k1:too-short"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "JWT_SECRETS" in done.stderr


def test_version(tmp_path: Path) -> None:
    done = cartsync(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout.startswith("cartsync ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_healthy(url: str, service: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert service.poll() is None, "cartsync serve exited before answering"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout_s} s")


def test_serve_with_embedded_redis_starts_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    redis_pid: int | None = None
    with out.open("wb") as stdout, err.open("wb") as stderr:
        service = subprocess.Popen(
            [sys.executable, "-m", "cartsync", "serve", "--port", str(port)],
            env=cli_env(tmp_path / "data"),
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until_healthy(f"{base}/healthz", service, timeout_s=20)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200

        said = err.read_text()
        assert "development secret" in said
        found = re.search(r"embedded redis-server at redis://127\.0\.0\.1:(\d+)", said)
        assert found, said
        with redis.Redis(port=int(found.group(1))) as embedded:
            redis_pid = int(embedded.info("server")["process_id"])
        assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()
        assert f"cartsync listening on {base}" in out.read_text()

        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0, err.read_text()
        assert not alive(redis_pid)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        if redis_pid is not None and alive(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)
