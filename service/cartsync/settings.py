"""One frozen settings object, read once from ``CARTSYNC_*`` environment variables.

Every variable is listed in docs/configuration.md; a malformed value stops start-up with its name.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from limits import parse_many
from starlette.config import Config
from starlette.datastructures import Secret

from cartsync.domain.limits import Limits
from cartsync.domain.pickup import Stores, StoresFile, check_stores

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


def _origins(raw: str) -> tuple[str, ...]:
    """CARTSYNC_PAGES_HOST_ORIGINS: exact origins, as browsers write ``MessageEvent.origin``.

    A message's origin is compared as a string and the list also goes into a CSP
    ``frame-ancestors``, so anything else (a path, a wildcard, a trailing slash) is refused.
    """
    origins = _csv(raw)
    for origin in origins:
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme not in ("http", "https") or not parts.hostname or origin != exact:
            raise SettingsError(
                "CARTSYNC_PAGES_HOST_ORIGINS: each entry is an origin like "
                f"https://shop.example (scheme, host, optional port), got {origin!r}"
            )
        if "*" in origin:
            raise SettingsError(f"CARTSYNC_PAGES_HOST_ORIGINS: no wildcards, got {origin!r}")
    return origins


def _events_settings(config: Config, *, embedded: bool) -> dict[str, Any]:
    """CARTSYNC_EVENTS, _WORKER, _WEBHOOK*, deadlines and the outbox (docs/events.md).

    With the embedded Redis (``make run``), events and an in-process worker are on by default.
    """
    events = config("EVENTS", cast=str, default="") or ("true" if embedded else "false")
    worker = config("WORKER", cast=str, default="") or ("embedded" if embedded else "off")
    if events not in ("true", "false"):
        raise SettingsError(f"CARTSYNC_EVENTS must be true or false, got {events!r}")
    if worker not in ("off", "embedded"):
        raise SettingsError(f"CARTSYNC_WORKER must be off or embedded, got {worker!r}")
    webhooks = config("WEBHOOKS_FILE", cast=str, default="")
    return {
        "events": events == "true",
        "worker": worker,
        "webhooks_file": Path(webhooks) if webhooks else None,
        "webhooks_allow_http": config("WEBHOOKS_ALLOW_HTTP", cast=bool, default=False),
        "webhook_retry_hours": config("WEBHOOK_RETRY_HOURS", cast=float, default=24.0),
        "webhook_retry_base_s": config("WEBHOOK_RETRY_BASE_SECONDS", cast=float, default=1.0),
        "abandoned_after_s": config("ABANDONED_AFTER_SECONDS", cast=int, default=3600),
        "expiry_notice_s": config("EXPIRY_NOTICE_SECONDS", cast=int, default=3 * DAY),
        "guest_events": config("GUEST_EVENTS", cast=bool, default=False),
        "outbox_partitions": config("OUTBOX_PARTITIONS", cast=int, default=16),
        "worker_poll_s": config("WORKER_POLL_SECONDS", cast=float, default=0.5),
        "worker_visibility_s": config("WORKER_VISIBILITY_SECONDS", cast=float, default=30.0),
        "worker_metrics_port": config("WORKER_METRICS_PORT", cast=int, default=9101),
        "events_feed_max": config("EVENTS_FEED_MAX", cast=int, default=100_000),
    }


MAPPED_ROLES = ("customer", "staff", "service", "support")
"""The roles an identity provider's tokens may map to; guests are always cartsync's own."""


@dataclass(frozen=True)
class IssuerConfig:
    """An identity provider whose tokens cartsync accepts, and where its claims say who is who.

    Claim names are read whole first, then as a dotted path: ``realm_access.roles`` (Keycloak)
    and ``https://shop.example/roles`` (an Auth0 namespaced claim) both work.
    """

    issuer: str
    jwks_url: str | None = None
    """None: found through ``<issuer>/.well-known/openid-configuration``."""
    audience: str = "cartsync"
    subject_claim: str = "sub"
    role_claim: str = "role"
    roles: Mapping[str, str] = field(default_factory=dict)
    """Provider role -> cartsync role; empty: the claim holds cartsync's role names."""
    role: str | None = None
    """Every token of this issuer has this role; the role claim is then not read."""
    store_claim: str = "store"

    def check(self, where: str) -> None:
        if not self.issuer:
            raise SettingsError(f"{where}: issuer must not be empty")
        for url in (self.issuer, self.jwks_url):
            if url is not None and not url.startswith(("https://", "http://")):
                raise SettingsError(f"{where}: {url!r} is not an http(s) URL")
        for name, value in (
            ("subject_claim", self.subject_claim),
            ("role_claim", self.role_claim),
            ("store_claim", self.store_claim),
        ):
            if not value.strip():
                raise SettingsError(f"{where}: {name} must name a claim")
        wrong = sorted({self.role or "customer", *self.roles.values()} - set(MAPPED_ROLES))
        if wrong:
            raise SettingsError(
                f"{where}: roles map to {wrong}, which is not one of {', '.join(MAPPED_ROLES)}"
            )


_ISSUER_KEYS = {f for f in IssuerConfig.__dataclass_fields__}


def _role_map(raw: str, name: str) -> dict[str, str]:
    """Parse ``customer=shopper,staff=store-clerk|store-lead`` into provider role -> role."""
    roles: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        ours, sep, theirs = part.partition("=")
        if not sep or not theirs.strip():
            raise SettingsError(f"{name}: entries look like customer=<provider role>, got {part!r}")
        for role in theirs.split("|"):
            roles[role.strip()] = ours.strip()
    return roles


def _issuers_file(path: Path, default_audience: str) -> list[IssuerConfig]:
    name = "CARTSYNC_ISSUERS_FILE"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{name}: {path} is not TOML: {exc}") from exc
    tables = document.get("issuer")
    if not isinstance(tables, list) or not tables:
        raise SettingsError(f"{name}: {path} needs one [[issuer]] table or more")
    found: list[IssuerConfig] = []
    for n, table in enumerate(tables, 1):
        where = f"{name} {path} [[issuer]] #{n}"
        unknown = sorted(set(table) - _ISSUER_KEYS)
        if unknown:
            raise SettingsError(f"{where}: unknown keys {unknown}")
        values: dict[str, Any] = {"audience": default_audience, **table}
        if not isinstance(values.get("issuer"), str):
            raise SettingsError(f"{where}: issuer (a string) is required")
        roles = values.get("roles", {})
        if not isinstance(roles, dict) or not all(
            isinstance(v, str | list) for v in roles.values()
        ):
            raise SettingsError(f"{where}: roles maps customer/staff/service to provider roles")
        # In the file, roles read like the variable: cartsync role -> provider role(s).
        values["roles"] = {
            theirs: ours
            for ours, listed in roles.items()
            for theirs in ([listed] if isinstance(listed, str) else listed)
        }
        try:
            issuer = IssuerConfig(**values)
        except TypeError as exc:
            raise SettingsError(f"{where}: {exc}") from exc
        issuer.check(where)
        found.append(issuer)
    return found


def _stores_file(raw: str) -> Stores:
    """CARTSYNC_STORES_FILE: the click-and-collect stores (docs/configuration.md); none: off."""
    if not raw:
        return Stores()
    name, path = "CARTSYNC_STORES_FILE", Path(raw)
    try:
        document = msgspec.json.decode(path.read_bytes(), type=StoresFile)
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from exc
    except msgspec.DecodeError as exc:  # ValidationError included: it names the field's path
        raise SettingsError(f"{name}: {path}: {exc}") from exc
    problem = check_stores(document.stores)
    if problem is not None:
        raise SettingsError(f"{name}: {path}: {problem[1]} - at `{problem[0]}`")
    return Stores(document.stores)


def _compression(raw: str) -> Literal["off", "on"]:
    if raw not in ("off", "on"):
        raise SettingsError(f"CARTSYNC_WS_COMPRESSION must be off or on, got {raw!r}")
    return "on" if raw == "on" else "off"


def _failure_mode(raw: str) -> Literal["open", "closed"]:
    if raw not in ("open", "closed"):
        raise SettingsError(f"CARTSYNC_CATALOG_FAILURE must be open or closed, got {raw!r}")
    return "closed" if raw == "closed" else "open"


def _issuers(config: Config) -> tuple[IssuerConfig, ...]:
    """The identity providers named by CARTSYNC_OIDC_* and by CARTSYNC_ISSUERS_FILE."""
    audience = config("JWT_AUDIENCE", cast=str, default="cartsync")
    found: list[IssuerConfig] = []
    oidc = config("OIDC_ISSUER", cast=str, default="")
    if oidc:
        issuer = IssuerConfig(
            issuer=oidc,
            jwks_url=config("OIDC_JWKS_URL", cast=str, default="") or None,
            # Empty means unset, as in a ConfigMap that lists every variable.
            audience=config("OIDC_AUDIENCE", cast=str, default="") or audience,
            subject_claim=config("OIDC_SUBJECT_CLAIM", cast=str, default="") or "sub",
            role_claim=config("OIDC_ROLE_CLAIM", cast=str, default="") or "role",
            roles=_role_map(config("OIDC_ROLES", cast=str, default=""), "CARTSYNC_OIDC_ROLES"),
            role=config("OIDC_ROLE", cast=str, default="") or None,
            store_claim=config("OIDC_STORE_CLAIM", cast=str, default="") or "store",
        )
        issuer.check("CARTSYNC_OIDC_*")
        found.append(issuer)
    listed = config("ISSUERS_FILE", cast=str, default="")
    if listed:
        found.extend(_issuers_file(Path(listed), audience))
    names = [i.issuer for i in found]
    if len(set(names)) != len(names):
        raise SettingsError("the same issuer is configured twice (CARTSYNC_OIDC_*, issuers file)")
    return tuple(found)


@dataclass(frozen=True)
class Settings:
    """Everything configurable; build it with ``Settings.from_env()``."""

    redis_url: Secret | None = None
    redis_cluster: bool = False
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = "cartsync-master"
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    redis_max_connections: int = 64
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int = 9100
    """/metrics on its own port, bound like the API (0: off); never on the API port."""
    data_dir: Path = Path(".cartsync")
    jwt_secrets: Mapping[str, Secret] = field(default_factory=dict)
    jwt_jwks_file: Path | None = None
    jwt_issuer: str = "cartsync"
    jwt_audience: str = "cartsync"
    jwt_leeway_s: int = 30
    jwt_jwks_url: str | None = None
    issuers: tuple[IssuerConfig, ...] = ()
    """Identity providers besides cartsync itself (CARTSYNC_OIDC_*, CARTSYNC_ISSUERS_FILE)."""
    guest_token_ttl_s: int = 30 * DAY
    guest_data_ttl_s: int = 30 * DAY
    customer_data_ttl_s: int = 90 * DAY
    idempotency_ttl_s: int = DAY
    event_log_max: int = 1000
    history_days: float = 30.0
    """Events older than this leave the log at the owner's next change (0: only the count cap)."""
    events: bool = False
    """Write back-office events (docs/events.md); default: on with the embedded Redis."""
    worker: Literal["off", "embedded"] = "off"
    webhooks_file: Path | None = None
    webhooks_allow_http: bool = False
    webhook_retry_hours: float = 24.0
    webhook_retry_base_s: float = 1.0
    abandoned_after_s: int = 3600
    expiry_notice_s: int = 3 * DAY
    guest_events: bool = False
    outbox_partitions: int = 16
    worker_poll_s: float = 0.5
    worker_visibility_s: float = 30.0
    worker_metrics_port: int = 9101
    events_feed_max: int = 100_000
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
    staff_signin_issuer: str | None = None
    """The issuer the store tablet page signs staff in with (authorization code with PKCE);
    None: the page offers the development token box instead."""
    staff_signin_client_id: str = "cartsync-tablet"
    staff_signin_offline_access: bool = False
    """Ask that provider for ``offline_access`` too: some issue refresh tokens only then."""
    staff_idle_s: int = 600
    """A store tablet left untouched this long signs out and ends its open grant."""
    claim_rate_limit: str = "10/minute"
    pages_host_origins: tuple[str, ...] = ()
    """Origins of the shop's app whose postMessage may hand the shopper page its token."""
    log_format: str = "json"
    log_level: str = "INFO"
    ws_origins: tuple[str, ...] = ()
    ws_ping_interval_s: float = 20.0
    ws_auth_timeout_s: float = 5.0
    ws_max_per_owner: int = 20
    ws_send_queue: int = 256
    ws_send_queue_bytes: int = 1 << 20
    ws_send_timeout_s: float = 10.0
    ws_compression: Literal["off", "on"] = "off"
    hub_heartbeat_s: float = 2.0
    catalog_url: str | None = None
    """The shop's product endpoint (docs/catalogue.md); None: callers name and price lines."""
    catalog_failure: Literal["open", "closed"] = "open"
    catalog_timeout_s: float = 2.0
    catalog_cache_s: float = 300.0
    catalog_breaker_failures: int = 5
    catalog_breaker_reset_s: float = 30.0
    stores: Stores = field(default_factory=Stores)
    """Click-and-collect stores (CARTSYNC_STORES_FILE); empty: no store or time can be chosen."""

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
                redis_max_connections=config("REDIS_MAX_CONNECTIONS", cast=int, default=64),
                host=config("HOST", cast=str, default="127.0.0.1"),
                port=config("PORT", cast=int, default=8000),
                metrics_port=config("METRICS_PORT", cast=int, default=9100),
                data_dir=Path(config("DATA_DIR", cast=str, default=".cartsync")),
                jwt_secrets=_secrets(
                    config("JWT_SECRETS", cast=str, default=""), "CARTSYNC_JWT_SECRETS"
                ),
                jwt_jwks_file=Path(jwks) if jwks else None,
                jwt_issuer=config("JWT_ISSUER", cast=str, default="cartsync"),
                jwt_audience=config("JWT_AUDIENCE", cast=str, default="cartsync"),
                jwt_leeway_s=config("JWT_LEEWAY_SECONDS", cast=int, default=30),
                jwt_jwks_url=config("JWT_JWKS_URL", cast=str, default="") or None,
                issuers=_issuers(config),
                guest_token_ttl_s=config("GUEST_TOKEN_TTL_SECONDS", cast=int, default=30 * DAY),
                guest_data_ttl_s=config("GUEST_TTL_DAYS", cast=int, default=30) * DAY,
                customer_data_ttl_s=config("CUSTOMER_TTL_SECONDS", cast=int, default=0)
                or config("CUSTOMER_TTL_DAYS", cast=int, default=90) * DAY,
                idempotency_ttl_s=config("IDEMPOTENCY_TTL_SECONDS", cast=int, default=DAY),
                event_log_max=config("EVENT_LOG_MAX", cast=int, default=1000),
                history_days=config("HISTORY_DAYS", cast=float, default=30.0),
                **_events_settings(
                    config, embedded=url is None and not env.get("CARTSYNC_REDIS_SENTINELS")
                ),
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
                staff_signin_issuer=config("STAFF_SIGNIN_ISSUER", cast=str, default="") or None,
                staff_signin_client_id=config(
                    "STAFF_SIGNIN_CLIENT_ID", cast=str, default="cartsync-tablet"
                ),
                staff_signin_offline_access=config(
                    "STAFF_SIGNIN_OFFLINE_ACCESS", cast=bool, default=False
                ),
                staff_idle_s=config("STAFF_IDLE_SECONDS", cast=int, default=600),
                claim_rate_limit=config("CLAIM_RATE_LIMIT", cast=str, default="10/minute"),
                pages_host_origins=_origins(config("PAGES_HOST_ORIGINS", cast=str, default="")),
                log_format=config("LOG_FORMAT", cast=str, default="json"),
                log_level=config("LOG_LEVEL", cast=str, default="INFO"),
                ws_origins=_csv(config("WS_ORIGINS", cast=str, default="")),
                ws_ping_interval_s=config("WS_PING_INTERVAL_SECONDS", cast=float, default=20.0),
                ws_auth_timeout_s=config("WS_AUTH_TIMEOUT_SECONDS", cast=float, default=5.0),
                ws_max_per_owner=config("WS_MAX_PER_OWNER", cast=int, default=20),
                ws_send_queue=config("WS_SEND_QUEUE", cast=int, default=256),
                ws_send_queue_bytes=config("WS_SEND_QUEUE_BYTES", cast=int, default=1 << 20),
                ws_send_timeout_s=config("WS_SEND_TIMEOUT_SECONDS", cast=float, default=10.0),
                ws_compression=_compression(config("WS_COMPRESSION", cast=str, default="off")),
                hub_heartbeat_s=config("HUB_HEARTBEAT_SECONDS", cast=float, default=2.0),
                catalog_url=config("CATALOG_URL", cast=str, default="") or None,
                catalog_failure=_failure_mode(config("CATALOG_FAILURE", cast=str, default="open")),
                catalog_timeout_s=config("CATALOG_TIMEOUT_SECONDS", cast=float, default=2.0),
                catalog_cache_s=config("CATALOG_CACHE_SECONDS", cast=float, default=300.0),
                catalog_breaker_failures=config("CATALOG_BREAKER_FAILURES", cast=int, default=5),
                catalog_breaker_reset_s=config(
                    "CATALOG_BREAKER_RESET_SECONDS", cast=float, default=30.0
                ),
                stores=_stores_file(config("STORES_FILE", cast=str, default="")),
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
            "CARTSYNC_REDIS_MAX_CONNECTIONS": self.redis_max_connections,
            "CARTSYNC_WEBHOOK_RETRY_HOURS": self.webhook_retry_hours,
            "CARTSYNC_WEBHOOK_RETRY_BASE_SECONDS": self.webhook_retry_base_s,
            "CARTSYNC_ABANDONED_AFTER_SECONDS": self.abandoned_after_s,
            "CARTSYNC_EXPIRY_NOTICE_SECONDS": self.expiry_notice_s,
            "CARTSYNC_OUTBOX_PARTITIONS": self.outbox_partitions,
            "CARTSYNC_WORKER_POLL_SECONDS": self.worker_poll_s,
            "CARTSYNC_WORKER_VISIBILITY_SECONDS": self.worker_visibility_s,
            "CARTSYNC_EVENTS_FEED_MAX": self.events_feed_max,
            "CARTSYNC_MAX_BODY_BYTES": self.max_body_bytes,
            "CARTSYNC_IDEMPOTENCY_TTL_SECONDS": self.idempotency_ttl_s,
            "CARTSYNC_GUEST_TTL_DAYS": self.guest_data_ttl_s,
            "CARTSYNC_CUSTOMER_TTL_DAYS": self.customer_data_ttl_s,
            "CARTSYNC_GUEST_TOKEN_TTL_SECONDS": self.guest_token_ttl_s,
            "CARTSYNC_HANDOFF_TTL_SECONDS": self.handoff_ttl_s,
            "CARTSYNC_GRANT_TTL_SECONDS": self.grant_ttl_s,
            "CARTSYNC_STAFF_IDLE_SECONDS": self.staff_idle_s,
            "CARTSYNC_REDIS_TIMEOUT_SECONDS": self.redis_timeout_s,
            "CARTSYNC_WS_PING_INTERVAL_SECONDS": self.ws_ping_interval_s,
            "CARTSYNC_WS_AUTH_TIMEOUT_SECONDS": self.ws_auth_timeout_s,
            "CARTSYNC_WS_MAX_PER_OWNER": self.ws_max_per_owner,
            "CARTSYNC_WS_SEND_QUEUE": self.ws_send_queue,
            "CARTSYNC_WS_SEND_QUEUE_BYTES": self.ws_send_queue_bytes,
            "CARTSYNC_WS_SEND_TIMEOUT_SECONDS": self.ws_send_timeout_s,
            "CARTSYNC_HUB_HEARTBEAT_SECONDS": self.hub_heartbeat_s,
            "CARTSYNC_CATALOG_TIMEOUT_SECONDS": self.catalog_timeout_s,
            "CARTSYNC_CATALOG_CACHE_SECONDS": self.catalog_cache_s,
            "CARTSYNC_CATALOG_BREAKER_FAILURES": self.catalog_breaker_failures,
            "CARTSYNC_CATALOG_BREAKER_RESET_SECONDS": self.catalog_breaker_reset_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.staff_signin_issuer and self.staff_signin_issuer not in {
            i.issuer for i in self.issuers
        }:
            raise SettingsError(
                "CARTSYNC_STAFF_SIGNIN_ISSUER must be one of the configured issuers "
                "(CARTSYNC_OIDC_ISSUER or CARTSYNC_ISSUERS_FILE)"
            )
        if self.history_days < 0:
            raise SettingsError("CARTSYNC_HISTORY_DAYS must be 0 (count cap only) or more")
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
        if not 0 <= self.worker_metrics_port <= 65535:
            raise SettingsError("CARTSYNC_WORKER_METRICS_PORT must be 0 (off) to 65535")
        if self.outbox_partitions > 16384:
            raise SettingsError("CARTSYNC_OUTBOX_PARTITIONS must be at most 16384")
        if self.worker == "embedded" and not self.events:
            raise SettingsError("CARTSYNC_WORKER=embedded needs CARTSYNC_EVENTS=true")
        if not 0 <= self.metrics_port <= 65535 or self.metrics_port == self.port:
            raise SettingsError("CARTSYNC_METRICS_PORT must be 0 (off) to 65535, not CARTSYNC_PORT")
        if self.port > 65535:
            raise SettingsError("CARTSYNC_PORT must be at most 65535")
        if self.jwt_jwks_url and self.jwt_jwks_file:
            raise SettingsError("set CARTSYNC_JWT_JWKS_URL or CARTSYNC_JWT_JWKS_FILE, not both")
        if self.catalog_url and not self.catalog_url.startswith(("https://", "http://")):
            raise SettingsError("CARTSYNC_CATALOG_URL must be an http(s) URL")
        if self.jwt_jwks_url and not self.jwt_jwks_url.startswith(("https://", "http://")):
            raise SettingsError("CARTSYNC_JWT_JWKS_URL must be an http(s) URL")
        if self.jwt_issuer in {i.issuer for i in self.issuers}:
            raise SettingsError(
                "CARTSYNC_JWT_ISSUER names cartsync's own tokens; an identity provider must "
                "have another issuer"
            )
