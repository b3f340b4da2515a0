"""The ``cartsync`` command, run as people run it: a real process, a real embedded redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from cartsync import __version__
from tests.conftest import Tokens
from tests.support.processes import TEST_SECRET, RedisProcess

SERVICE_SRC = Path(__file__).parents[1] / "service"


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus any CARTSYNC_* setting, plus a private data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSYNC_")}
    env.update(PYTHONPATH=str(SERVICE_SRC), CARTSYNC_DATA_DIR=str(data_dir), **extra)
    env.setdefault("CARTSYNC_METRICS_PORT", str(free_port()))  # not the shared default 9100
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


def claims(token: str, secret_file: Path) -> dict[str, object]:
    """What the token says, checked against the secret in the file the way the service does."""
    secret = secret_file.read_text().strip()
    decoded: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], audience="cartsync", issuer="cartsync"
    )
    return decoded


def test_token_in_a_named_data_dir_makes_its_secret_and_says_so(tmp_path: Path) -> None:
    secret_file = tmp_path / "data" / "dev-jwt-secret"
    done = cartsync(tmp_path, "token", "customer", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")
    assert done.stdout.count("\n") == 1
    assert f"new development secret, just created in {secret_file}" in done.stderr
    assert secret_file.read_text().strip() not in done.stdout + done.stderr
    assert claims(done.stdout.strip(), secret_file)["sub"] == "alice"

    again = cartsync(tmp_path, "token", "customer", "bob")
    assert again.returncode == 0, again.stderr
    assert f"signed with the development secret in {secret_file}\n" in again.stderr
    assert claims(again.stdout.strip(), secret_file)["sub"] == "bob"


def test_staff_token_carries_its_store(tmp_path: Path) -> None:
    done = cartsync(tmp_path, "token", "staff", "clerk-1", "--store", "berlin-3", "--ttl", "60")
    assert done.returncode == 0, done.stderr
    said = claims(done.stdout.strip(), tmp_path / "data" / "dev-jwt-secret")
    assert (said["sub"], said["role"], said["store"]) == ("clerk-1", "staff", "berlin-3")


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


def test_token_with_configured_secrets_names_the_key_not_the_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-for-the-cli-test-only-" + "y" * 8
    done = subprocess.run(
        [sys.executable, "-m", "cartsync", "token", "customer", "alice"],
        env=cli_env(tmp_path / "data", CARTSYNC_JWT_SECRETS=f"k2:{secret},k1:{'z' * 32}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "signed with key 'k2', the first of CARTSYNC_JWT_SECRETS" in done.stderr
    assert secret not in done.stderr
    assert jwt.get_unverified_header(done.stdout.strip())["kid"] == "k2"
    assert not (tmp_path / "data").exists(), "a development secret was made needlessly"


def test_version(tmp_path: Path) -> None:
    done = cartsync(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout == f"cartsync {__version__}\n"


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


def test_token_finds_the_data_dir_of_the_service_it_is_for(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Run from a subfolder, a token works; run from elsewhere, no stray secret is made."""
    project, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    (project / "src" / "deep").mkdir(parents=True)
    elsewhere.mkdir()
    assert not [p for p in tmp_path.parents if (p / ".cartsync").exists()], (
        "a .cartsync folder above the test's tmp_path would be found; remove it"
    )
    env = {k: v for k, v in cli_env(project).items() if k != "CARTSYNC_DATA_DIR"}
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "cartsync", "serve", "--port", str(port)],
            env={**env, "CARTSYNC_REDIS_URL": redis_server.url},
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/readyz", service, timeout_s=20)
        secret_file = project / ".cartsync" / "dev-jwt-secret"
        secret = secret_file.read_text().strip()

        def token_from(cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "cartsync", "token", "customer", "alice"],
                env={**env, **extra},
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        def accepted(token: str) -> bool:
            headers = {"Authorization": f"Bearer {token}"}
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/cart", headers=headers, timeout=10)
            assert answer.status_code in {200, 401}, answer.text
            return answer.status_code == 200

        below = token_from(project / "src" / "deep")
        assert below.returncode == 0, below.stderr
        assert f"signed with the development secret in {secret_file}" in below.stderr
        assert accepted(below.stdout.strip())

        lost = token_from(elsewhere)
        assert lost.returncode == 2
        assert lost.stdout == ""
        assert f"no .cartsync/dev-jwt-secret in {elsewhere}" in lost.stderr
        assert "CARTSYNC_DATA_DIR" in lost.stderr
        assert list(elsewhere.iterdir()) == [], "a new secret was made where nobody asked"

        pointed = token_from(elsewhere, CARTSYNC_DATA_DIR=str(project / ".cartsync"))
        assert pointed.returncode == 0, pointed.stderr
        assert f"signed with the development secret in {secret_file}" in pointed.stderr
        assert accepted(pointed.stdout.strip())

        for done in (below, lost, pointed):
            assert secret not in done.stdout + done.stderr
    finally:
        service.terminate()
        service.wait(timeout=15)


def _worker_pids(supervisor: int) -> list[int]:
    """The ``cartsync serve`` children of a ``serve --workers N`` (not its redis-server)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"cartsync" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _serving_pid(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which process holds the server end of the loopback connection from ``client_port``."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if local.endswith(f":{server_port:04X}") and remote.endswith(f":{client_port:04X}"):
            inodes.add(inode)
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


async def _close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the socket; the code it closed with."""
    try:
        for _ in range(20):
            await asyncio.wait_for(ws.recv(), 15)
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code
    raise AssertionError("20 frames and no close")


async def _next_frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    for _ in range(20):
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind} frame among 20")


async def _across_workers(port: int, workers: list[int], token: str, stop: Any) -> list[int | None]:
    """A socket on each worker; a change made on each reaches the other; then ``stop()`` and
    the close code of every socket opened."""
    protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
    on: dict[int, ClientConnection] = {}
    spare: list[ClientConnection] = []
    try:
        for _ in range(40):  # the kernel picks the worker: open until both have one
            ws = await connect(f"ws://127.0.0.1:{port}/v1/ws", subprotocols=protocols)
            await _next_frame(ws, "hello")
            await ws.send('{"type": "sync"}')
            await _next_frame(ws, "snapshot")
            pid = _serving_pid(ws.local_address[1], port, workers)
            if pid is not None and pid not in on:
                on[pid] = ws
            else:
                spare.append(ws)
                # A worker that is still starting has not bound its SO_REUSEPORT socket yet, and
                # the kernel sends every connection to the other: give it a moment.
                await asyncio.sleep(0.1)
            if len(on) == 2:
                break
        assert sorted(on) == sorted(workers), "40 sockets all landed on one worker"
        one, two = (on[pid] for pid in workers)
        for n, (writer, reader) in enumerate([(one, two), (two, one)]):
            op = {"type": "op", "id": f"op-{n}", "name": "add_line", "body": {"sku": f"S-{n}"}}
            await writer.send(json.dumps(op))
            for _ in range(5):  # the reader's own earlier change comes first
                event = (await _next_frame(reader, "event"))["event"]
                if event["rev"] == n + 1:
                    break
            assert (event["rev"], event["type"]) == (n + 1, "line.added"), event
            assert event["data"]["line"]["sku"] == f"S-{n}", event
        stop()
        return [await _close_code(ws) for ws in [one, two, *spare]]
    finally:
        for ws in [*on.values(), *spare]:
            await ws.close()


def test_serve_with_two_workers_shares_events_and_stops_cleanly(tmp_path: Path) -> None:
    """Two workers on one port, embedded Redis: a change made through a socket on one worker
    reaches a socket on the other, both ways; SIGTERM closes every socket 1001 and exits 0."""
    port = free_port()
    # Up to 40 sockets of one customer are opened before both workers hold one.
    env = cli_env(
        tmp_path / "data", CARTSYNC_JWT_SECRETS=TEST_SECRET, CARTSYNC_WS_MAX_PER_OWNER="64"
    )
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        service = subprocess.Popen(
            [sys.executable, "-m", "cartsync", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/readyz", service, timeout_s=30)
        workers = _worker_pids(service.pid)
        assert len(workers) == 2, err.read_text()
        token = Tokens().token("customer", "two-workers")
        stop = lambda: service.send_signal(signal.SIGTERM)  # noqa: E731
        codes = asyncio.run(_across_workers(port, workers, token, stop))
        assert set(codes) == {1001}, codes
        assert service.wait(timeout=40) == 0, err.read_text()
        assert not any(alive(pid) for pid in workers)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def _listening(port: int) -> int:
    """Listening IPv4 sockets on ``port`` (state 0A in /proc/net/tcp)."""
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return sum(1 for f in rows if f[1].endswith(f":{port:04X}") and f[3] == "0A")


async def _spread(port: int, workers: list[int], count: int) -> list[int]:
    """Open ``count`` keep-alive connections at once; how many each worker holds."""
    conns = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count))
    )
    try:
        for _, writer in conns:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: cartsync\r\n\r\n")
        for reader, _ in conns:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        held = dict.fromkeys(workers, 0)
        for _, writer in conns:
            pid = _serving_pid(writer.get_extra_info("sockname")[1], port, workers)
            assert pid is not None
            held[pid] += 1
        return sorted(held.values())
    finally:
        for _, writer in conns:
            writer.close()


def test_two_workers_each_listen_and_share_a_burst_of_connections(tmp_path: Path) -> None:
    """Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads connections by
    address. From one shared socket the first worker to wake took them all (0 and 32 in most
    runs); spread by hash, one of two holds 4 or fewer of 32 about once in 50,000 runs."""
    port = free_port()
    env = cli_env(tmp_path / "data", CARTSYNC_JWT_SECRETS=TEST_SECRET)
    service = subprocess.Popen(
        [sys.executable, "-m", "cartsync", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/readyz", service, timeout_s=30)
        deadline = time.monotonic() + 30
        while _listening(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the second worker may still be starting
        assert _listening(port) == 2, "one listening socket per worker"
        workers = _worker_pids(service.pid)
        assert len(workers) == 2
        fewer, more = asyncio.run(_spread(port, workers, 32))
        assert fewer >= 5, (fewer, more)
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=40) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def test_serve_stopped_by_bad_settings_logs_the_reason_at_error(tmp_path: Path) -> None:
    """An operator alerting on ERROR lines sees why the service did not start."""
    done = subprocess.run(
        [sys.executable, "-m", "cartsync", "serve"],
        env=cli_env(tmp_path, CARTSYNC_JWT_SECRETS="k1:too-short", CARTSYNC_LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    stopped = [line for line in lines if "JWT_SECRETS" in line.get("message", "")]
    assert stopped, done.stderr
    assert stopped[0]["level"] == "ERROR"
