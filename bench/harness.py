"""What every benchmark shares: processes started and stopped by PID, CPU pinning, and the JSON
file plus markdown table that report a result. Paced load is in load.py, statistics in stats.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from tests.support.processes import RedisProcess, ServiceProcess, free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"
START_CORES: frozenset[int] | None = (
    frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
)
"""The cores this process might use when it started, before a benchmark pinned it to one."""
REPEATS = 3
"""Each measurement runs this many times; reports give the median and the range."""
OFFERS: dict[str, bool] = {"deflate offered": True, "no deflate": False}
"""How a websocket benchmark's client opens: offering permessage-deflate (as every browser
does) or not (as node's ``ws`` client by default). Each websocket figure is measured both ways:
a server that accepts the offer keeps a compressor per socket, so one way alone measures zlib."""


def offer(deflate: bool) -> Literal["deflate"] | None:
    """The ``compression`` argument of ``websockets``' ``connect`` for one way of opening."""
    return "deflate" if deflate else None


# CPU pinning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cores:
    """Where the servers and the load generator run; ``None`` where nothing is pinned."""

    servers: frozenset[int] | None
    load: frozenset[int] | None
    why_not: str = ""

    @classmethod
    def detect(cls) -> Cores:
        """Servers on core 0, the load generator on core 1, when this process may use both."""
        if not hasattr(os, "sched_setaffinity"):
            return cls(None, None, "os.sched_setaffinity is not available on this platform")
        allowed = START_CORES or frozenset()
        if not {0, 1} <= allowed:
            return cls(None, None, f"cores 0 and 1 are not both available (allowed: {allowed})")
        return cls(frozenset({0}), frozenset({1}))

    def pin_self(self) -> str:
        """Pin this process (the load generator); a line saying what happened."""
        if self.load is None:
            return f"load generator (pid {os.getpid()}): not pinned, {self.why_not}"
        try:
            threads = pin_tree(os.getpid(), self.load)
        except OSError as exc:
            return f"load generator (pid {os.getpid()}): not pinned, {exc}"
        return f"load generator (pid {os.getpid()}, {_threads(threads)}): cpu {_cpus(self.load)}"

    def pin_server(self, label: str, pid: int) -> str:
        if self.servers is None:
            return f"{label} (pid {pid}): not pinned, {self.why_not}"
        try:
            threads = pin_tree(pid, self.servers)
        except OSError as exc:
            return f"{label} (pid {pid}): not pinned, {exc}"
        return f"{label} (pid {pid}, {_threads(threads)}): cpu {_cpus(self.servers)}"


def _threads(n: int) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


def _cpus(cores: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


def unpin_self() -> None:
    """Give this process back the cores it started with: the next benchmark's processes
    inherit them, and one left on a single core would measure something else."""
    if START_CORES is not None:
        pin_tree(os.getpid(), START_CORES)


def pin_tree(pid: int, cores: frozenset[int]) -> int:
    """Pin every thread of ``pid`` and of its child processes; returns how many were pinned.

    ``sched_setaffinity(pid)`` moves only that one thread: redis-server's I/O threads and a
    Python process's helper threads already exist, so each task id is pinned in turn.
    """
    pinned = 0
    for proc in [pid, *_descendants(pid)]:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{proc}/task")]
        except FileNotFoundError:
            tids = [proc]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cores)
                pinned += 1
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    return pinned


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue and len(found) < 1000:
        current = queue.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                queue.append(int(child))
    return found


# Processes --------------------------------------------------------------------------------


class Processes:
    """Starts redis-server and cartsync processes, pins them, and stops every one by PID."""

    def __init__(self, workdir: Path, cores: Cores) -> None:
        self.workdir = workdir
        self.cores = cores
        self.notes: list[str] = []
        self._redis: list[RedisProcess] = []
        self._services: list[ServiceProcess] = []
        self._commands: list[Command] = []
        self._pids: list[tuple[str, int]] = []

    def redis(self, name: str = "redis-server") -> RedisProcess:
        server = RedisProcess(self.workdir / name)
        self._redis.append(server)  # listed before start: a half-started process is still stopped
        server.start()
        self._adopt(name, server.proc)
        return server

    def service(self, name: str, env: dict[str, str]) -> ServiceProcess:
        server = ServiceProcess(env)
        self._services.append(server)
        server.start()
        self._adopt(name, server.proc)
        return server

    def command(self, name: str, args: list[str], env: dict[str, str], health_path: str) -> Command:
        """Any other server: ``args`` with ``{port}`` filled in, ready once ``health_path``
        answers 200; its output goes to a log in the work folder."""
        server = Command(name, args, env, self.workdir / f"{_slug(name)}.log", health_path)
        self._commands.append(server)
        server.start()
        self._adopt(name, server.proc)
        return server

    def _adopt(self, name: str, proc: subprocess.Popen[bytes] | None) -> None:
        assert proc is not None, "start() returned without a process"
        self._pids.append((name, proc.pid))
        self.notes.append(self.cores.pin_server(name, proc.pid))

    def stop_all(self) -> list[str]:
        """Stop services first (they hold Redis connections), then Redis; report leftovers."""
        failures: list[str] = []
        stops = [
            *(c.stop for c in reversed(self._commands)),
            *(s.stop for s in reversed(self._services)),
            *(r.stop for r in self._redis),
        ]
        for stop in stops:
            try:
                stop()
            except Exception as exc:  # one process refusing to stop must not spare the others
                failures.append(repr(exc))
        leftovers = [f"{name} (pid {pid})" for name, pid in self._pids if _alive(pid)]
        leftovers += failures
        self._commands.clear()
        self._services.clear()
        self._redis.clear()
        return leftovers


class Command:
    """One server process started from a command line on a free loopback port."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_path: Path, health_path: str
    ) -> None:
        self.name = name
        self.port = free_port()
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.env = {k: v.replace("{port}", str(self.port)) for k, v in env.items()}
        self.log_path = log_path
        self.health_path = health_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            # The argument lists are the benchmarks' own (node, hypercorn), never user input.
            self.proc = subprocess.Popen(  # noqa: S603
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self.health_path} within 30 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def rss_kb(pid: int) -> int:
    """Resident memory of one process, from ``VmRSS`` in /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds one process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its child processes (``serve --workers N``), as they stand."""
    total = 0.0
    for proc in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            total += cpu_s(proc)
    return total


def tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its child processes."""
    total = 0
    for proc in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            total += rss_kb(proc)
    return total


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(pid, 0) but is not running
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def processes(workdir: Path, cores: Cores) -> Iterator[Processes]:
    """A ``Processes`` whose every process is stopped when the block ends, however it ends."""
    procs = Processes(workdir, cores)
    try:
        yield procs
    finally:
        leftovers = procs.stop_all()
        if leftovers:
            raise RuntimeError(f"still running after stop: {', '.join(leftovers)}")


# Reports ----------------------------------------------------------------------------------


@dataclass
class Report:
    """What a benchmark hands back: notes, one table, and the data behind it."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]
    data: dict[str, Any]

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        lines += [f"- {note}" for note in self.notes]
        lines += ["", "| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def write(self, results_dir: Path = RESULTS_DIR) -> Path:
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.name}.json"
        document = {
            "name": self.name,
            "title": self.title,
            "environment": environment(),
            "notes": self.notes,
            "table": {"headers": self.headers, "rows": self.rows},
            **self.data,
        }
        path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")
        return path


def _finite(value: Any) -> Any:
    """The document with NaN (a run without samples) as null, which JSON can carry."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def environment() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
    }
