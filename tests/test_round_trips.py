"""One mutation costs one Redis round trip: the script call, nothing around it."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess


def _watch(redis_server: RedisProcess, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    client = redis_server.client()
    with client.monitor() as monitor:
        ready.set()
        while not stop.is_set():
            seen.append(monitor.next_command())


ready = threading.Event()


def _commands_during(redis_server: RedisProcess, action: Any) -> list[str]:
    """Top-level commands Redis received while ``action`` ran (script-internal ones excluded)."""
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    waker = redis_server.client()
    waker.ping()  # connect now, so its handshake is not counted
    ready.clear()
    watcher = threading.Thread(target=_watch, args=(redis_server, seen, stop), daemon=True)
    watcher.start()
    assert ready.wait(5)
    time.sleep(0.2)
    action()
    time.sleep(0.3)
    stop.set()
    waker.ping()  # wakes the monitor so the thread can end
    waker.close()
    watcher.join(5)
    return [
        c["command"].split(" ")[0].upper()
        for c in seen
        if c.get("client_type") != "lua"
        and "PING" not in c["command"].upper()
        and "cs:hb:" not in c["command"]  # the pub/sub heartbeat, not part of any request
    ]


def test_each_mutation_is_one_script_call(
    redis_server: RedisProcess, service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    headers = tokens.headers("customer", customer_id)
    with httpx.Client(base_url=service.url, headers=headers) as http:
        # The first call loads the store's Lua (FUNCTION LOAD; on Redis 6.2 NOSCRIPT, SCRIPT
        # LOAD); measure warm calls.
        http.post("/v1/cart/lines", json={"sku": "WARM-UP"}).raise_for_status()
        http.get("/v1/cart").raise_for_status()

        def add() -> None:
            r = http.post("/v1/cart/lines", json={"sku": "A-1", "qty": 2, "attrs": {"size": "M"}})
            assert r.status_code == 201

        def patch() -> None:
            r = http.patch("/v1/cart/lines/L2", json={"qty": 5}, headers={"If-Match": '"2"'})
            assert r.status_code == 200

        def read() -> None:
            assert http.get("/v1/cart").json()["rev"] == 3

        for action in (add, patch, read):
            commands = _commands_during(redis_server, action)
            assert commands in (["FCALL"], ["EVALSHA"]), commands
