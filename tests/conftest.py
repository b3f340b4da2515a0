"""Fixtures: a private redis-server and a real cartsync process per test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from cartsync.auth.tokens import TokenIssuer, TokenKeys
from cartsync.domain.principal import Role
from cartsync.settings import Settings
from tests.support.processes import TEST_SECRET, RedisProcess, ServiceProcess, service_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own, for tests that stop it or change its data."""
    server = RedisProcess(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def service(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(redis_server.url, tmp_path_factory.mktemp("service"))
    proc = ServiceProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


class Tokens:
    """Mints tokens the test service accepts, for any role and subject."""

    def __init__(self) -> None:
        settings = Settings.from_env(
            {"CARTSYNC_JWT_SECRETS": TEST_SECRET, "CARTSYNC_DATA_DIR": "/nonexistent"}
        )
        self._issuer = TokenIssuer(TokenKeys.from_settings(settings), settings)

    def token(self, role: str, subject: str, *, store: str | None = None, ttl_s: int = 3600) -> str:
        return self._issuer.issue(Role(role), subject, store=store, ttl_s=ttl_s)

    def headers(self, role: str, subject: str, **kw: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject, **kw)}"}


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def customer_id() -> str:
    """A fresh customer per test keeps tests independent without flushing the shared Redis."""
    return f"cust-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as c:
        yield c


@pytest.fixture
def alice(client: httpx.AsyncClient, tokens: Tokens, customer_id: str) -> httpx.AsyncClient:
    """A client already signed in as a fresh customer."""
    client.headers.update(tokens.headers("customer", customer_id))
    return client
