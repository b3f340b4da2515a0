"""The service-side fixtures (a private redis-server, a real cartsync process, token minting),
reused by importing them, plus the client's own: a signed-in ``CartsyncClient`` per test."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CLIENT_SRC = Path(__file__).resolve().parents[1] / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

from tests.conftest import *  # noqa: E402, F403 - redis_server, service, tokens, customer_id...
from tests.conftest import Tokens  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402

from cartsync_client import CartsyncClient  # noqa: E402
from client_testkit import FAST  # noqa: E402


@pytest.fixture
async def shopper(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> AsyncIterator[CartsyncClient]:
    """A client signed in as a fresh customer, on device ``phone``."""
    token = tokens.token("customer", customer_id)
    async with CartsyncClient(service.url, token, device_id="phone", backoff=FAST) as c:
        yield c
