"""Settings from CARTSYNC_* variables: sane defaults, loud on bad values, secrets never shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cartsync.domain.limits import Limits
from cartsync.settings import DAY, Settings, SettingsError

SECRET = "a-long-enough-jwt-secret-" + "q" * 16
OLD_SECRET = "the-previous-jwt-secret-" + "r" * 16


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_url is None  # serve then starts an embedded redis-server
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.data_dir == Path(".cartsync")
    assert dict(s.jwt_secrets) == {}
    assert s.jwt_jwks_file is None
    assert (s.jwt_issuer, s.jwt_audience, s.jwt_leeway_s) == ("cartsync", "cartsync", 30)
    assert s.guest_token_ttl_s == 30 * DAY
    assert s.guest_data_ttl_s == 30 * DAY
    assert s.customer_data_ttl_s == 90 * DAY
    assert s.idempotency_ttl_s == DAY
    assert s.event_log_max == 1000
    assert s.limits == Limits(max_lines=200, max_qty=999, max_wishlists=20, max_wishlist_items=100)
    assert s.max_body_bytes == 64 * 1024
    assert s.default_currency == "EUR"
    assert s.rate_limit == "50/second;600/minute"
    assert s.guest_issue_rate_limit == "10/minute"
    assert s.rate_limit_storage == "memory://"
    assert s.redis_timeout_s == 2.0
    assert s.trusted_proxies == ()
    assert s.pages_host_origins == ()  # the shopper page takes no postMessage
    assert s.staff_signin_offline_access is False


def test_the_pages_settings_are_read() -> None:
    s = Settings.from_env(
        {
            "CARTSYNC_PAGES_HOST_ORIGINS": "https://shop.example, http://127.0.0.1:8080",
            "CARTSYNC_STAFF_SIGNIN_OFFLINE_ACCESS": "true",
        }
    )
    assert s.pages_host_origins == ("https://shop.example", "http://127.0.0.1:8080")
    assert s.staff_signin_offline_access is True


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "CARTSYNC_REDIS_URL": "redis://127.0.0.1:6390/2",
            "CARTSYNC_HOST": "localhost",
            "CARTSYNC_PORT": "9001",
            "CARTSYNC_DATA_DIR": "/var/lib/cartsync",
            "CARTSYNC_JWT_SECRETS": f"new:{SECRET}, old:{OLD_SECRET}",
            "CARTSYNC_JWT_ISSUER": "shop",
            "CARTSYNC_JWT_AUDIENCE": "carts",
            "CARTSYNC_JWT_LEEWAY_SECONDS": "5",
            "CARTSYNC_GUEST_TOKEN_TTL_SECONDS": "3600",
            "CARTSYNC_GUEST_TTL_DAYS": "3",
            "CARTSYNC_CUSTOMER_TTL_DAYS": "7",
            "CARTSYNC_IDEMPOTENCY_TTL_SECONDS": "7200",
            "CARTSYNC_EVENT_LOG_MAX": "50",
            "CARTSYNC_MAX_LINES": "10",
            "CARTSYNC_MAX_QTY": "20",
            "CARTSYNC_MAX_WISHLISTS": "4",
            "CARTSYNC_MAX_WISHLIST_ITEMS": "30",
            "CARTSYNC_MAX_BODY_BYTES": "2048",
            "CARTSYNC_DEFAULT_CURRENCY": "USD",
            "CARTSYNC_RATE_LIMIT": "5/second",
            "CARTSYNC_GUEST_ISSUE_RATE_LIMIT": "3/minute",
            "CARTSYNC_REDIS_TIMEOUT_SECONDS": "0.25",
            "CARTSYNC_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2,",
        }
    )
    assert str(s.redis_url) == "redis://127.0.0.1:6390/2"
    assert (s.host, s.port, s.data_dir) == ("localhost", 9001, Path("/var/lib/cartsync"))
    assert {kid: str(v) for kid, v in s.jwt_secrets.items()} == {"new": SECRET, "old": OLD_SECRET}
    assert list(s.jwt_secrets) == ["new", "old"]  # the first one signs
    assert (s.jwt_issuer, s.jwt_audience, s.jwt_leeway_s) == ("shop", "carts", 5)
    assert s.guest_token_ttl_s == 3600
    assert (s.guest_data_ttl_s, s.customer_data_ttl_s) == (3 * DAY, 7 * DAY)
    assert (s.idempotency_ttl_s, s.event_log_max) == (7200, 50)
    assert s.limits == Limits(max_lines=10, max_qty=20, max_wishlists=4, max_wishlist_items=30)
    assert (s.max_body_bytes, s.default_currency) == (2048, "USD")
    assert (s.rate_limit, s.guest_issue_rate_limit) == ("5/second", "3/minute")
    assert s.redis_timeout_s == 0.25
    assert s.trusted_proxies == ("10.0.0.1", "10.0.0.2")


def test_a_bare_secret_gets_the_default_kid() -> None:
    s = Settings.from_env({"CARTSYNC_JWT_SECRETS": SECRET})
    assert {kid: str(v) for kid, v in s.jwt_secrets.items()} == {"default": SECRET}


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CARTSYNC_PORT", "abc"),
        ("CARTSYNC_PORT", "0"),
        ("CARTSYNC_PORT", "70000"),
        ("CARTSYNC_MAX_QTY", "5000"),
        ("CARTSYNC_MAX_QTY", "0"),
        ("CARTSYNC_MAX_LINES", "0"),
        ("CARTSYNC_MAX_LINES", "many"),
        ("CARTSYNC_MAX_WISHLISTS", "1"),
        ("CARTSYNC_JWT_SECRETS", "too-short"),
        ("CARTSYNC_JWT_SECRETS", "kid:too-short"),
        ("CARTSYNC_JWT_SECRETS", f":{SECRET}"),
        ("CARTSYNC_DEFAULT_CURRENCY", "eur"),
        ("CARTSYNC_DEFAULT_CURRENCY", "EURO"),
        ("CARTSYNC_CUSTOMER_TTL_DAYS", "0"),
        ("CARTSYNC_GUEST_TTL_DAYS", "-1"),
        ("CARTSYNC_IDEMPOTENCY_TTL_SECONDS", "0"),
        ("CARTSYNC_EVENT_LOG_MAX", "0"),
        ("CARTSYNC_MAX_BODY_BYTES", "0"),
        ("CARTSYNC_REDIS_TIMEOUT_SECONDS", "soon"),
        # Accepted today, but each makes the running service misbehave instead of refusing to
        # start: a rate limit the limits library cannot parse crashes the app's start-up with a
        # traceback; a timeout of 0 or less answers every request 503; a guest token lifetime
        # of 0 answers POST /v1/guest with 500.
        ("CARTSYNC_RATE_LIMIT", "lots"),
        ("CARTSYNC_GUEST_ISSUE_RATE_LIMIT", "ten a minute"),
        ("CARTSYNC_REDIS_TIMEOUT_SECONDS", "0"),
        ("CARTSYNC_REDIS_TIMEOUT_SECONDS", "-1"),
        ("CARTSYNC_GUEST_TOKEN_TTL_SECONDS", "0"),
        # Compared as strings with MessageEvent.origin and written into frame-ancestors.
        ("CARTSYNC_PAGES_HOST_ORIGINS", "https://shop.example/"),
        ("CARTSYNC_PAGES_HOST_ORIGINS", "https://shop.example/app"),
        ("CARTSYNC_PAGES_HOST_ORIGINS", "shop.example"),
        ("CARTSYNC_PAGES_HOST_ORIGINS", "*"),
        ("CARTSYNC_PAGES_HOST_ORIGINS", "https://*.shop.example"),
        ("CARTSYNC_PAGES_HOST_ORIGINS", "https://shop.example,ftp://files.example"),
        ("CARTSYNC_STAFF_SIGNIN_OFFLINE_ACCESS", "sometimes"),
    ],
)
def test_a_malformed_variable_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize("value", ["short-secret-1", "kid:short-secret-2", f"ok:{SECRET},k2:tiny"])
def test_a_refused_secret_is_not_quoted(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"CARTSYNC_JWT_SECRETS": value})
    for part in value.replace(",", ":").split(":"):
        if len(part) > 4:
            assert part not in str(caught.value)


def test_repr_shows_no_secret() -> None:
    s = Settings.from_env(
        {
            "CARTSYNC_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
            "CARTSYNC_JWT_SECRETS": f"new:{SECRET},old:{OLD_SECRET}",
        }
    )
    assert str(s.redis_url) == "redis://:hunter2@127.0.0.1:1/0"  # still usable where needed
    for shown in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert "hunter2" not in shown
        assert SECRET not in shown
        assert OLD_SECRET not in shown
        assert "qqqq" not in shown
        assert "rrrr" not in shown
