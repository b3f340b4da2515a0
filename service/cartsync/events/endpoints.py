"""Webhook endpoints from ``CARTSYNC_WEBHOOKS_FILE`` (YAML or JSON), checked before start-up."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cartsync.events.catalogue import EVENT_TYPES

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_KEYS = {"name", "url", "secret", "secrets", "events", "max_concurrency"}


class WebhooksFileError(ValueError):
    """The webhooks file cannot be read or one entry is wrong; the message names the entry."""


@dataclass(frozen=True)
class WebhookEndpoint:
    name: str
    url: str
    secrets: tuple[bytes, ...]
    """HMAC keys, newest first; every one signs each delivery, so a receiver may rotate."""
    types: frozenset[str] | None
    """None: every type."""
    max_concurrency: int = 8

    def __repr__(self) -> str:  # never the secrets
        return f"WebhookEndpoint(name={self.name!r}, url={self.url!r})"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(raw: object, where: str) -> bytes:
    if not isinstance(raw, str) or not raw.startswith("whsec_"):
        raise WebhooksFileError(f"{where}: a secret is 'whsec_' followed by base64")
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhooksFileError(f"{where}: the secret after 'whsec_' is not base64") from exc
    if len(key) < 24:
        raise WebhooksFileError(f"{where}: the secret must hold at least 24 bytes")
    return key


def _entry(raw: Any, n: int, allow_http: bool) -> WebhookEndpoint:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"endpoint #{n}" + (f" ({name!r})" if isinstance(name, str) else "")
    if not isinstance(raw, dict):
        raise WebhooksFileError(f"{where}: expected a mapping with name, url and secret")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise WebhooksFileError(f"{where}: unknown keys {unknown}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WebhooksFileError(f"{where}: name must match [a-z0-9][a-z0-9_-]{{0,62}}")
    url = raw.get("url")
    if not isinstance(url, str):
        raise WebhooksFileError(f"{where}: url (a string) is required")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhooksFileError(f"{where}: url {url!r} is not an https URL")
    if parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname)):
        raise WebhooksFileError(
            f"{where}: url {url!r} is not https (http is allowed only for loopback hosts, "
            "or with CARTSYNC_WEBHOOKS_ALLOW_HTTP=true)"
        )
    if ("secret" in raw) == ("secrets" in raw):
        raise WebhooksFileError(f"{where}: give secret or secrets (a list), one of them")
    listed = [raw["secret"]] if "secret" in raw else raw["secrets"]
    if not isinstance(listed, list) or not listed:
        raise WebhooksFileError(f"{where}: secrets is a non-empty list")
    keys = tuple(_secret(s, where) for s in listed)
    types: frozenset[str] | None = None
    if "events" in raw:
        events = raw["events"]
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) for e in events)
        ):
            raise WebhooksFileError(f"{where}: events is a non-empty list of event types")
        wrong = sorted(set(events) - set(EVENT_TYPES))
        if wrong:
            raise WebhooksFileError(
                f"{where}: unknown event type {', '.join(wrong)}; known: {', '.join(EVENT_TYPES)}"
            )
        types = frozenset(events)
    concurrency = raw.get("max_concurrency", 8)
    if type(concurrency) is not int or not 1 <= concurrency <= 256:
        raise WebhooksFileError(f"{where}: max_concurrency is an integer from 1 to 256")
    return WebhookEndpoint(name, url, keys, types, concurrency)


def load_webhooks(path: Path, *, allow_http: bool) -> tuple[WebhookEndpoint, ...]:
    """The endpoints listed in ``path``; raise WebhooksFileError naming the first bad entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebhooksFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise WebhooksFileError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    entries = document.get("endpoints") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise WebhooksFileError(f"{path}: expected a top-level 'endpoints' list")
    found = [_entry(raw, n, allow_http) for n, raw in enumerate(entries, 1)]
    names = [e.name for e in found]
    for name in names:
        if names.count(name) > 1:
            raise WebhooksFileError(f"endpoint {name!r}: the name is used twice")
    return tuple(found)
