"""One frozen settings object, read once from ``CARTSYNC_*`` environment variables.

Every variable is listed in docs/configuration.md; a malformed value stops start-up with its name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from limits import parse_many
from starlette.config import Config
from starlette.datastructures import Secret

from cartsync.domain.limits import Limits

DAY = 86_400


class SettingsError(ValueError):
    """A CARTSYNC_* variable is missing or malformed."""


def _secrets(raw: str, name: str) -> dict[str, Secret]:
    """Parse ``kid:secret,kid2:secret2`` (a bare ``secret`` gets kid ``default``)."""
    keys: dict[str, Secret] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        kid, sep, secret = part.partition(":")
        if not sep:
            kid, secret = "default", part
        if not kid or len(secret) < 32:
            raise SettingsError(f"{name}: each entry is kid:secret with a secret of 32+ characters")
        keys[kid] = Secret(secret)
    return keys


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Everything configurable; build it with ``Settings.from_env()``."""

    redis_url: Secret | None = None
    redis_cluster: bool = False
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = "cartsync-master"
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".cartsync")
    jwt_secrets: Mapping[str, Secret] = field(default_factory=dict)
    jwt_jwks_file: Path | None = None
    jwt_issuer: str = "cartsync"
    jwt_audience: str = "cartsync"
    jwt_leeway_s: int = 30
    guest_token_ttl_s: int = 30 * DAY
    guest_data_ttl_s: int = 30 * DAY
    customer_data_ttl_s: int = 90 * DAY
    idempotency_ttl_s: int = DAY
    event_log_max: int = 1000
    limits: Limits = field(default_factory=Limits)
    max_body_bytes: int = 64 * 1024
    default_currency: str = "EUR"
    rate_limit: str = "50/second;600/minute"
    service_rate_limit: str = "2000/second"
    guest_issue_rate_limit: str = "10/minute"
    rate_limit_storage: str = "memory://"
    redis_timeout_s: float = 2.0
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    handoff_ttl_s: int = 120
    grant_ttl_s: int = 3600
    claim_rate_limit: str = "10/minute"
    log_format: str = "json"
    log_level: str = "INFO"
    ws_origins: tuple[str, ...] = ()
    ws_ping_interval_s: float = 20.0
    ws_auth_timeout_s: float = 5.0
    ws_max_per_owner: int = 20
    ws_send_queue: int = 256
    ws_send_queue_bytes: int = 1 << 20
    ws_send_timeout_s: float = 10.0
    hub_heartbeat_s: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read CARTSYNC_* variables; raise SettingsError naming the first bad one."""
        env = dict(os.environ if environ is None else environ)
        config = Config(environ=env, env_prefix="CARTSYNC_")
        try:
            url = config("REDIS_URL", cast=str, default="") or None
            limits = Limits(
                max_lines=config("MAX_LINES", cast=int, default=200),
                max_qty=config("MAX_QTY", cast=int, default=999),
                max_wishlists=config("MAX_WISHLISTS", cast=int, default=20),
                max_wishlist_items=config("MAX_WISHLIST_ITEMS", cast=int, default=100),
            )
            limits.check()
            jwks = config("JWT_JWKS_FILE", cast=str, default="")
            settings = cls(
                redis_url=Secret(url) if url else None,
                redis_cluster=config("REDIS_CLUSTER", cast=bool, default=False),
                redis_sentinels=_csv(config("REDIS_SENTINELS", cast=str, default="")),
                redis_sentinel_master=config(
                    "REDIS_SENTINEL_MASTER", cast=str, default="cartsync-master"
                ),
                redis_wait_replicas=config("REDIS_WAIT_REPLICAS", cast=int, default=0),
                redis_wait_timeout_ms=config("REDIS_WAIT_TIMEOUT_MS", cast=int, default=100),
                host=config("HOST", cast=str, default="127.0.0.1"),
                port=config("PORT", cast=int, default=8000),
                data_dir=Path(config("DATA_DIR", cast=str, default=".cartsync")),
                jwt_secrets=_secrets(
                    config("JWT_SECRETS", cast=str, default=""), "CARTSYNC_JWT_SECRETS"
                ),
                jwt_jwks_file=Path(jwks) if jwks else None,
                jwt_issuer=config("JWT_ISSUER", cast=str, default="cartsync"),
                jwt_audience=config("JWT_AUDIENCE", cast=str, default="cartsync"),
                jwt_leeway_s=config("JWT_LEEWAY_SECONDS", cast=int, default=30),
                guest_token_ttl_s=config("GUEST_TOKEN_TTL_SECONDS", cast=int, default=30 * DAY),
                guest_data_ttl_s=config("GUEST_TTL_DAYS", cast=int, default=30) * DAY,
                customer_data_ttl_s=config("CUSTOMER_TTL_DAYS", cast=int, default=90) * DAY,
                idempotency_ttl_s=config("IDEMPOTENCY_TTL_SECONDS", cast=int, default=DAY),
                event_log_max=config("EVENT_LOG_MAX", cast=int, default=1000),
                limits=limits,
                max_body_bytes=config("MAX_BODY_BYTES", cast=int, default=64 * 1024),
                default_currency=config("DEFAULT_CURRENCY", cast=str, default="EUR"),
                rate_limit=config("RATE_LIMIT", cast=str, default="50/second;600/minute"),
                service_rate_limit=config("SERVICE_RATE_LIMIT", cast=str, default="2000/second"),
                guest_issue_rate_limit=config(
                    "GUEST_ISSUE_RATE_LIMIT", cast=str, default="10/minute"
                ),
                rate_limit_storage=config("RATE_LIMIT_STORAGE", cast=str, default="memory://"),
                redis_timeout_s=config("REDIS_TIMEOUT_SECONDS", cast=float, default=2.0),
                trusted_proxies=_csv(config("TRUSTED_PROXIES", cast=str, default="")),
                cors_origins=_csv(config("CORS_ORIGINS", cast=str, default="")),
                handoff_ttl_s=config("HANDOFF_TTL_SECONDS", cast=int, default=120),
                grant_ttl_s=config("GRANT_TTL_SECONDS", cast=int, default=3600),
                claim_rate_limit=config("CLAIM_RATE_LIMIT", cast=str, default="10/minute"),
                log_format=config("LOG_FORMAT", cast=str, default="json"),
                log_level=config("LOG_LEVEL", cast=str, default="INFO"),
                ws_origins=_csv(config("WS_ORIGINS", cast=str, default="")),
                ws_ping_interval_s=config("WS_PING_INTERVAL_SECONDS", cast=float, default=20.0),
                ws_auth_timeout_s=config("WS_AUTH_TIMEOUT_SECONDS", cast=float, default=5.0),
                ws_max_per_owner=config("WS_MAX_PER_OWNER", cast=int, default=20),
                ws_send_queue=config("WS_SEND_QUEUE", cast=int, default=256),
                ws_send_queue_bytes=config("WS_SEND_QUEUE_BYTES", cast=int, default=1 << 20),
                ws_send_timeout_s=config("WS_SEND_TIMEOUT_SECONDS", cast=float, default=10.0),
                hub_heartbeat_s=config("HUB_HEARTBEAT_SECONDS", cast=float, default=2.0),
            )
        except (ValueError, KeyError) as exc:
            raise SettingsError(str(exc)) from exc
        settings.check()
        return settings

    def check(self) -> None:
        """Reject values that would make the service misbehave rather than fail."""
        positive = {
            "CARTSYNC_PORT": self.port,
            "CARTSYNC_EVENT_LOG_MAX": self.event_log_max,
            "CARTSYNC_MAX_BODY_BYTES": self.max_body_bytes,
            "CARTSYNC_IDEMPOTENCY_TTL_SECONDS": self.idempotency_ttl_s,
            "CARTSYNC_GUEST_TTL_DAYS": self.guest_data_ttl_s,
            "CARTSYNC_CUSTOMER_TTL_DAYS": self.customer_data_ttl_s,
            "CARTSYNC_GUEST_TOKEN_TTL_SECONDS": self.guest_token_ttl_s,
            "CARTSYNC_HANDOFF_TTL_SECONDS": self.handoff_ttl_s,
            "CARTSYNC_GRANT_TTL_SECONDS": self.grant_ttl_s,
            "CARTSYNC_REDIS_TIMEOUT_SECONDS": self.redis_timeout_s,
            "CARTSYNC_WS_PING_INTERVAL_SECONDS": self.ws_ping_interval_s,
            "CARTSYNC_WS_AUTH_TIMEOUT_SECONDS": self.ws_auth_timeout_s,
            "CARTSYNC_WS_MAX_PER_OWNER": self.ws_max_per_owner,
            "CARTSYNC_WS_SEND_QUEUE": self.ws_send_queue,
            "CARTSYNC_WS_SEND_QUEUE_BYTES": self.ws_send_queue_bytes,
            "CARTSYNC_WS_SEND_TIMEOUT_SECONDS": self.ws_send_timeout_s,
            "CARTSYNC_HUB_HEARTBEAT_SECONDS": self.hub_heartbeat_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if not (len(self.default_currency) == 3 and self.default_currency.isupper()):
            raise SettingsError("CARTSYNC_DEFAULT_CURRENCY must be an ISO 4217 code like EUR")
        for name, spec in (
            ("CARTSYNC_RATE_LIMIT", self.rate_limit),
            ("CARTSYNC_SERVICE_RATE_LIMIT", self.service_rate_limit),
            ("CARTSYNC_GUEST_ISSUE_RATE_LIMIT", self.guest_issue_rate_limit),
            ("CARTSYNC_CLAIM_RATE_LIMIT", self.claim_rate_limit),
        ):
            try:
                parse_many(spec)
            except ValueError as exc:
                raise SettingsError(
                    f"{name} must look like '50/second;600/minute', got {spec!r}"
                ) from exc
        if self.log_format not in ("json", "text"):
            raise SettingsError("CARTSYNC_LOG_FORMAT must be json or text")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError("CARTSYNC_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.redis_cluster and self.redis_sentinels:
            raise SettingsError("set CARTSYNC_REDIS_CLUSTER or CARTSYNC_REDIS_SENTINELS, not both")
        if self.redis_cluster and self.redis_url is None:
            raise SettingsError("CARTSYNC_REDIS_CLUSTER needs CARTSYNC_REDIS_URL of a seed node")
        for entry in self.redis_sentinels:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(
                    f"CARTSYNC_REDIS_SENTINELS entries are host:port, got {entry!r}"
                )
        if self.redis_wait_replicas < 0 or self.redis_wait_timeout_ms < 0:
            raise SettingsError("CARTSYNC_REDIS_WAIT_* must not be negative")
        if self.redis_wait_replicas and self.redis_cluster:
            raise SettingsError("CARTSYNC_REDIS_WAIT_REPLICAS is for standalone or Sentinel Redis")
        if self.port > 65535:
            raise SettingsError("CARTSYNC_PORT must be at most 65535")
