"""The OpenAPI document, generated from the endpoint table and the msgspec types."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from cartsync import __version__, wire
from cartsync.web.endpoints import Endpoint

_ERRORS = {
    "400": "Malformed JSON or header",
    "401": "Missing or invalid token",
    "403": "Token may not do this",
    "404": "No such thing (or not yours)",
    "409": "Conflicts with the current state",
    "412": "If-Match names a stale revision",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Invalid field, limit exceeded, or Idempotency-Key reused",
    "429": "Rate limited (see Retry-After)",
    "503": "Redis unreachable (see Retry-After)",
}


def build(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    endpoints = list(endpoints)
    types: list[Any] = [wire.ErrorBody, wire.GuestToken, wire.Health]
    for ep in endpoints:
        types.extend(t for t in (ep.body, ep.response) if t is not None)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(types, schemas, strict=True))
    error = {"content": {"application/json": {"schema": by_type[wire.ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        for prefix, tag in (("/v1", "own data"), ("/v1/customers/{customer_id}", "service")):
            path = prefix + ep.path
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)}", path)
            ]
            op: dict[str, Any] = {
                "summary": ep.summary,
                "tags": [tag],
                "operationId": _operation_id(ep, tag),
                "parameters": params + _headers(ep),
                "responses": {
                    str(ep.status): {
                        "description": "OK",
                        "content": {"application/json": {"schema": by_type[ep.response]}}
                        if ep.response
                        else {},
                    },
                    **{code: {"description": d, **error} for code, d in _ERRORS.items()},
                },
                "security": [{"bearer": []}],
            }
            if ep.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": by_type[ep.body]}},
                }
            paths.setdefault(path, {})[ep.method.lower()] = op
    paths["/v1/guest"] = {
        "post": {
            "summary": "Issue a guest token for an anonymous device",
            "operationId": "issueGuest",
            "responses": {
                "201": {
                    "description": "Created",
                    "content": {"application/json": {"schema": by_type[wire.GuestToken]}},
                },
                "429": {"description": "Rate limited", **error},
            },
        }
    }
    for probe in ("/healthz", "/readyz"):
        paths[probe] = {
            "get": {
                "summary": "Process up" if probe == "/healthz" else "Redis reachable",
                "operationId": probe.strip("/"),
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": by_type[wire.Health]}},
                    }
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "cartsync", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _headers(ep: Endpoint) -> list[dict[str, Any]]:
    out = [
        {
            "name": "X-Device-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
        }
    ]
    if ep.mutation:
        out += [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
            {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
        ]
    return out


def _operation_id(ep: Endpoint, tag: str) -> str:
    name = ep.handler.__name__
    parts = name.split("_")
    camel = parts[0] + "".join(p.title() for p in parts[1:])
    return camel if tag == "own data" else camel + "ForCustomer"
