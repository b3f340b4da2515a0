"""Giving up: 410 Gone disables an endpoint, retries end in dead letters after
CARTSYNC_WEBHOOK_RETRY_HOURS, a failing endpoint never holds up a healthy one, and
``cartsync events dead`` / ``replay`` work on what is left."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens
from tests.support.events import (
    SECRET,
    Receiver,
    events_env,
    eventually,
    receiving,
    start_service,
    start_worker,
    target_env,
    webhooks_file,
)
from tests.support.processes import RedisProcess, free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def cli(redis: RedisProcess, folder: Path, env: dict[str, str], *args: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "cartsync", "events", *args],
        env=target_env(redis, folder, env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_gone_and_exhausted_endpoints_end_in_dead_letters_and_hold_up_no_one(
    private_redis: RedisProcess, tmp_path: Path, tokens: Tokens
) -> None:
    healthy = Receiver(free_port())
    gone = Receiver(free_port(), behaviour=lambda attempt, event: 410)
    broken = Receiver(free_port(), behaviour=lambda attempt, event: 500)
    hooks = webhooks_file(
        tmp_path,
        {"name": "healthy", "url": healthy.url, "secret": SECRET},
        {"name": "gone", "url": gone.url, "secret": SECRET},
        {"name": "broken", "url": broken.url, "secret": SECRET},
    )
    env = events_env(hooks, CARTSYNC_WEBHOOK_RETRY_HOURS="0.0005")  # 1.8 s of retries
    service = start_service(private_redis, tmp_path, env)
    worker = start_worker(private_redis, tmp_path, env)
    customers = [f"cust-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        async with (
            receiving(healthy),
            receiving(gone),
            receiving(broken),
            httpx.AsyncClient(base_url=service.url, timeout=10) as http,
        ):
            for c in customers:
                h = tokens.headers("customer", c)
                for sku in ("A", "B"):
                    r = await http.post("/v1/wishlists/default/items", headers=h, json={"sku": sku})
                    assert r.status_code == 201
            await eventually(lambda: len(healthy.ids()) == 4, "the healthy endpoint's events", 10)
            await eventually(
                lambda: (
                    len(
                        cli(
                            private_redis, tmp_path, env, "dead", "--endpoint", "broken"
                        ).stdout.splitlines()
                    )
                    == 4
                ),
                "every event given up for the broken endpoint",
                40,
            )
        # 410, then nothing more is sent: at most the requests already under way (one per
        # customer: their first events went out together).
        assert sum(gone.attempts.values()) <= len(customers)
        assert sum(broken.attempts.values()) >= 8  # each event was retried before giving up

        done = cli(private_redis, tmp_path, env, "dead", "--endpoint", "gone")
        assert done.returncode == 0, done.stderr
        dead = [json.loads(line) for line in done.stdout.splitlines()]
        assert {d["reason"] for d in dead} == {"gone"}
        assert len(dead) == 4
        assert dead[0]["last_status"] == "410"
        assert {d["event"]["id"] for d in dead} == healthy.ids()

        broken_dead = [
            json.loads(line)
            for line in cli(
                private_redis, tmp_path, env, "dead", "--endpoint", "broken"
            ).stdout.splitlines()
        ]
        assert {d["reason"] for d in broken_dead} == {"retries_exhausted"}
        assert {d["last_status"] for d in broken_dead} == {"500"}
        # Per customer, the second event was only tried once the first was given up.
        for c in customers:
            ours = [d["event"]["rev"] for d in broken_dead if d["owner"] == f"c:{c}"]
            assert ours == sorted(ours)

        # Replay sends the healthy endpoint its events again, with the same ids.
        before = len(healthy.received)
        async with receiving(healthy):
            done = cli(
                private_redis, tmp_path, env, "replay", "--from", "0", "--endpoint", "healthy"
            )
            assert done.returncode == 0, done.stderr
            assert "4 events queued again for healthy" in done.stderr
            await eventually(lambda: len(healthy.received) == before + 4, "the replay", 20)
        replayed = [r.event["id"] for r in healthy.received[before:]]
        assert sorted(replayed) == sorted(healthy.ids())
        assert healthy.rejected == []
    finally:
        worker.stop()
        service.stop()
