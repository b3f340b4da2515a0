"""Redis topologies for the suite: a 3-master Cluster (optionally with a replica per master)
and a Sentinel-managed master and replica.

Every process listens on a free loopback port in its own temporary folder and is stopped by
PID. Every wait is bounded and, when it runs out, says what it was waiting for and shows the
end of the relevant log.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import redis

from tests.support.processes import RedisProcess, free_port, kill, redis_server_binary

READY_TIMEOUT_S = 30.0
"""Longest wait for a cluster or a sentinel set to settle."""
POLL_S = 0.1

MASTER_NAME = "cartsync-master"


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli is not on PATH; it comes with the redis-server package")
    return found


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``check`` until it holds; raise naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        time.sleep(POLL_S)
    raise TimeoutError(f"{what} within {timeout_s:.0f} s (last error: {last_error!r})")


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _node(port: int, timeout_s: float = 2.0) -> redis.Redis:
    """A plain (non-cluster) client to one node, for administrative commands."""
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )


# Cluster -----------------------------------------------------------------------------------


class _Topology:
    """Started on entering a ``with`` block, stopped (every process killed) on leaving it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisCluster3(_Topology):
    """Three cluster-enabled masters, all 16384 slots assigned; no replicas unless asked.

    With ``replicas=1`` each master gets a replica, and a master that dies is replaced by the
    cluster's own failover (after ``node_timeout_ms``). With ``links=True`` as well, every
    master is reached through a ``ReplicationLink`` that it announces as its address
    (``cluster-announce-port``), so its replica's stream can be held back (``stall``) while
    clients and the cluster bus go on as before. ``ports`` are the processes' own ports;
    ``announced`` maps the ports the cluster names (CLUSTER SLOTS, NODES) back to them.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        links: bool = False,
    ) -> None:
        if links and not replicas:
            raise ValueError("links only matter for replicas")
        self.workdir = workdir
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        self.links: dict[int, ReplicationLink] = {}
        """Process port of a (first) master -> the relay it announces."""
        self.paused: set[int] = set()
        """Process ports of nodes stopped with SIGSTOP (``pause``)."""
        self._use_links = links

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def live_ports(self) -> list[int]:
        """Ports of the nodes whose process runs and is not paused."""
        return [
            n.port
            for n in self.nodes
            if n.proc is not None and n.proc.poll() is None and n.port not in self.paused
        ]

    @property
    def announced(self) -> dict[int, int]:
        """Port the cluster names a node by -> the node's process port."""
        names = {p: p for p in self.ports}
        names.update({link.port: port for port, link in self.links.items()})
        return names

    @property
    def seed_url(self) -> str:
        """Any node will do as a seed: the client learns the rest from CLUSTER SLOTS."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> Self:
        try:
            for n in range(3 * (1 + self.replicas)):
                port = free_port()
                extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    # Not port + 10000, which may be taken or past 65535.
                    "--cluster-port",
                    str(free_port()),
                ]
                if self._use_links and n < 3:  # redis-cli makes the first three masters
                    link = self.links[port] = ReplicationLink(port, hold_after=b"PSYNC")
                    extra += ["--cluster-announce-port", str(link.port)]
                node = RedisProcess(self.workdir / f"node{n}", port=port, extra=extra)
                self.nodes.append(node)
                node.start()
            self._create()
            wait_until("every node reports cluster_state:ok", self._settled)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        args = [redis_cli_binary(), "--cluster", "create"]
        # The addresses the nodes announce, so that redis-cli's checks agree with CLUSTER NODES.
        by_process = {port: name for name, port in self.announced.items() if name != port}
        args += [f"127.0.0.1:{by_process.get(p, p)}" for p in self.ports]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(args, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                f"{done.stdout.decode(errors='replace')[-2000:]}"
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )

    def _settled(self) -> bool:
        for port in self.ports:
            with _node(port) as c:
                info = c.cluster("INFO")
                if (
                    info.get("cluster_state") != "ok"
                    or int(info.get("cluster_slots_ok", 0)) != 16384
                    or int(info.get("cluster_known_nodes", 0)) != len(self.nodes)
                ):
                    return False
                if self.replicas:
                    replication = c.info("replication")
                    if replication.get("role") == "master":
                        if int(replication.get("connected_slaves", 0)) < self.replicas:
                            return False
                    elif replication.get("master_link_status") != "up":
                        return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        for link in self.links.values():
            link.close()

    # Inspecting and moving slots

    def client(self, port: int) -> redis.Redis:
        """A plain client to one node (close it after use)."""
        return _node(port)

    def keyslot(self, key: str) -> int:
        with _node(self.ports[0]) as c:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))

    def node_ids(self) -> dict[int, str]:
        """Port -> node id."""
        ids = {}
        for port in self.ports:
            with _node(port) as c:
                ids[port] = _text(c.execute_command("CLUSTER", "MYID"))
        return ids

    def slot_owners(self, port: int | None = None) -> dict[int, int]:
        """Slot -> port of the master serving it, as one node (default: the first) sees it."""
        with _node(port or self.ports[0]) as c:
            ranges = c.execute_command("CLUSTER", "SLOTS")
        owners: dict[int, int] = {}
        for entry in ranges:
            first, last, master = int(entry[0]), int(entry[1]), entry[2]
            for slot in range(first, last + 1):
                owners[slot] = int(master[1])
        return owners

    def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot``, checked to be agreed on by every node."""
        seen = {self.slot_owners(port)[slot] for port in self.live_ports}
        if len(seen) != 1:
            raise AssertionError(f"nodes disagree on who serves slot {slot}: {seen}")
        return seen.pop()

    def keys_in_slot(self, slot: int) -> list[str]:
        with _node(self.owner_of(slot)) as c:
            count = int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
            keys = c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, max(count, 1))
        return sorted(_text(k) for k in keys)

    def migrate_slot(self, slot: int, to_port: int, *, batch: int = 10) -> int:
        """Move ``slot`` and its keys to ``to_port`` the way ``redis-cli --cluster reshard`` does.

        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys in batches, then
        SETSLOT NODE on the target, the source and the rest. Returns how many keys moved.
        """
        from_port = self.owner_of(slot)
        if from_port == to_port:
            raise ValueError(f"slot {slot} is already served by {to_port}")
        ids = self.node_ids()
        moved = 0
        with _node(from_port, 10) as src, _node(to_port, 10) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from_port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to_port])
            for _ in range(10_000):
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command(
                    "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "REPLACE", "KEYS", *keys
                )
                moved += len(keys)
            else:
                raise RuntimeError(f"slot {slot} never emptied")
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        for port in self.ports:
            if port not in (from_port, to_port):
                with _node(port) as other:
                    other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        wait_until(
            f"every node agrees that {to_port} serves slot {slot}",
            lambda: self.owner_of(slot) == to_port,
        )
        return moved

    # Failing a master (with replicas)

    def process_of(self, announced_port: int) -> RedisProcess:
        """The node the cluster names by ``announced_port``."""
        port = self.announced[announced_port]
        return next(n for n in self.nodes if n.port == port)

    def kill(self, announced_port: int) -> None:
        """SIGKILL the node the cluster names by ``announced_port`` (no shutdown, a crash)."""
        node = self.process_of(announced_port)
        node.stop()
        self.paused.discard(node.port)

    def pause(self, announced_port: int) -> None:
        """SIGSTOP the node: it keeps its sockets but answers nothing, like a hung host."""
        node = self.process_of(announced_port)
        if node.proc is None:
            raise RuntimeError(f"the node on {announced_port} is not running")
        node.proc.send_signal(signal.SIGSTOP)
        self.paused.add(node.port)

    def wait_for_failover(self, old: int, slot: int, timeout_s: float = READY_TIMEOUT_S) -> int:
        """Every live node reports cluster_state:ok and names one live master, not ``old``
        (announced port), for ``slot``; that master's announced port."""
        alive = set(self.live_ports)

        def promoted() -> bool:
            for port in alive:
                with _node(port) as c:
                    if c.cluster("INFO").get("cluster_state") != "ok":
                        return False
            served = {self.slot_owners(port)[slot] for port in alive}
            if len(served) != 1 or old in served:
                return False
            new = served.pop()
            if self.announced[new] not in alive:
                return False
            with _node(self.announced[new]) as c:
                return bool(c.info("replication").get("role") == "master")

        wait_until(f"a replica replaces the master on {old} for slot {slot}", promoted, timeout_s)
        return self.owner_of(slot)

    def log(self, announced_port: int) -> str:
        return _tail(self.process_of(announced_port).workdir / "redis.log")


# Sentinel ----------------------------------------------------------------------------------


class ReplicationLink:
    """A loopback TCP relay between a replica and its master that can hold the master's stream.

    ``stall()`` keeps what the master sends in this process instead of passing it on, as a
    congested link would; if the master dies meanwhile, the held bytes die with the link. (A
    stopped replica process would not do: the kernel buffers the stream and the replica reads
    all of it when it resumes.)
    """

    BUFFER = 65536

    def __init__(self, master_port: int, *, hold_after: bytes | None = None) -> None:
        """With ``hold_after``, only connections that sent it (e.g. ``b"PSYNC"``: a replica's
        handshake) are held by ``stall``; clients of the master pass as before."""
        self.master_port = master_port
        self._hold_after = hold_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._held: list[tuple[socket.socket, bytes]] = []
        self._stalled = False
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="replication-link", daemon=True).start()

    def stall(self) -> None:
        with self._lock:
            self._stalled = True

    def resume(self) -> None:
        """Pass on what was held, in order, and everything after it (the link recovered)."""
        with self._lock:
            for dst, data in self._held:
                with contextlib.suppress(OSError):
                    dst.sendall(data)
            self._held.clear()
            self._stalled = False

    def held_bytes(self) -> int:
        with self._lock:
            return sum(len(data) for _, data in self._held)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._held.clear()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes its pump, which closes it
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                replica, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                master = socket.create_connection(("127.0.0.1", self.master_port), timeout=5)
                master.settimeout(None)
            except OSError:
                replica.close()  # the master is gone; the replica retries (or is promoted)
                continue
            with self._lock:
                if self._closed:
                    replica.close()
                    master.close()
                    return
                self._sockets += [replica, master]
            # Whether the master's stream on this connection may be held (set once marked).
            marked = threading.Event()
            if self._hold_after is None:
                marked.set()
            pumps = ((replica, master, False, marked), (master, replica, True, marked))
            for args in pumps:
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, holdable: bool, marked: threading.Event
    ) -> None:
        try:
            while data := src.recv(self.BUFFER):
                if not holdable and self._hold_after is not None and self._hold_after in data:
                    marked.set()
                with self._lock:
                    if holdable and self._stalled and marked.is_set():
                        self._held.append((dst, data))
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # The link is down: whatever was held is lost with it, as on a real network.
            with self._lock:
                self._held = [(d, b) for d, b in self._held if d is not dst]
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class SentinelProcess:
    """``redis-server <conf> --sentinel`` with its own (rewritable) config file."""

    def __init__(self, workdir: Path, master_port: int, *, quorum: int = 2) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = workdir / "sentinel.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {workdir}",
                    f"logfile {workdir / 'sentinel.log'}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                    f"sentinel failover-timeout {MASTER_NAME} 5000",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"sentinel exited:\n{self.log()}")
            try:
                with self.client() as c:
                    return bool(c.ping())
            except redis.ConnectionError:
                return False

        wait_until(f"sentinel on {self.port} answers PING", answers, 10)
        return self

    def stop(self) -> None:
        kill(self.proc)
        self.proc = None

    def client(self) -> redis.Redis:
        return _node(self.port)

    def log(self) -> str:
        return _tail(self.workdir / "sentinel.log")


class SentinelSet(_Topology):
    """A master, one replica of it (through a ``ReplicationLink``), and three sentinels
    (quorum 2) watching them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisProcess(workdir / "master")
        self.link = ReplicationLink(self.master.port)
        self.replica = RedisProcess(
            workdir / "replica",
            extra=["--replicaof", "127.0.0.1", str(self.link.port)],
        )
        self.sentinels = [
            SentinelProcess(workdir / f"sentinel{n}", self.master.port) for n in range(3)
        ]

    @property
    def name(self) -> str:
        return MASTER_NAME

    @property
    def sentinel_addresses(self) -> str:
        """The value of CARTSYNC_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @property
    def servers(self) -> list[RedisProcess]:
        return [self.master, self.replica]

    def start(self) -> Self:
        try:
            self.master.start()
            self.replica.start()
            wait_until("the replica is in sync with the master", self._replica_in_sync)
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until("every sentinel sees the master, the replica and 2 others", self._watched)
        except BaseException as exc:
            logs = "\n".join(f"--- sentinel {s.port}:\n{s.log()}" for s in self.sentinels)
            self.stop()
            raise RuntimeError(f"sentinel set did not start: {exc}\n{logs}") from exc
        return self

    def _replica_in_sync(self) -> bool:
        with self.replica.client() as c:
            info = c.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _watched(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as c:
                state: dict[str, Any] = c.sentinel_master(MASTER_NAME)
            if not (
                state.get("is_master")
                and not state.get("is_odown")
                and not state.get("is_sdown")
                and int(state.get("num-slaves", 0)) >= 1
                and int(state.get("num-other-sentinels", 0)) >= 2
            ):
                return False
        return True

    def current_master(self) -> tuple[str, int]:
        """The master's address as the first sentinel that answers reports it."""
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            try:
                with sentinel.client() as c:
                    host, port = c.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                    )
            except redis.ConnectionError:
                continue
            return _text(host), int(port)
        raise RuntimeError("no sentinel answered")

    def kill_master(self) -> int:
        """SIGKILL the process that is master now; return its port."""
        _, port = self.current_master()
        for server in self.servers:
            if server.port == port:
                server.stop()
                return port
        raise RuntimeError(f"the master on {port} is not one of this set's processes")

    def wait_for_failover(self, old_port: int, timeout_s: float = READY_TIMEOUT_S) -> int:
        """Every sentinel names a new master, and that server says it is master; its port."""

        def promoted() -> bool:
            seen = set()
            for sentinel in self.sentinels:
                with sentinel.client() as c:
                    _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                seen.add(int(port))
            if len(seen) != 1 or old_port in seen:
                return False
            with _node(seen.pop()) as c:
                return bool(c.info("replication").get("role") == "master")

        wait_until(f"a replica replaces the master on {old_port}", promoted, timeout_s)
        return self.current_master()[1]

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
        self.link.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
