"""The OpenAPI 3.1 document, generated from the endpoint, command and public route tables and the
msgspec types, so what is served and what is described cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from cartsync import __version__, wire
from cartsync.domain.consent import CODE_DIGITS
from cartsync.domain.principal import DEVICE_PATTERN, SUBJECT_PATTERN
from cartsync.web.endpoints import Endpoint, PublicRoute
from cartsync.web.inputs import IDEMPOTENCY_KEY

_REVISION = "[0-9]{1,15}"
"""Digits the edge takes as a revision: 15 stay below 2^53 - 1, which inputs.py also checks."""
_ETAG = f'(W/)?"{_REVISION}"'

PATH_PARAMS: Mapping[str, dict[str, Any]] = {
    "customer_id": {
        "description": "The customer's id in the shop (service tokens only)",
        "schema": {"type": "string", "pattern": f"^{SUBJECT_PATTERN.pattern}$"},
        "example": "cust-42",
    },
    "grant_id": {
        "description": "A grant the customer gave this staff member (staff tokens only)",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "example": "5f0c1c7e8c7d4c0c9f7f3c2b1a0e9d8c",
    },
    "code": {
        "description": "The hand-off code the customer's device shows",
        "schema": {"type": "string", "pattern": f"^[0-9]{{{CODE_DIGITS}}}$"},
        "example": "04819327",
    },
    "line_id": {"description": "A cart line's id", "schema": {"type": "string"}, "example": "L1"},
    "wishlist_id": {
        "description": "A wishlist's id (`default` and `saved` always exist)",
        "schema": {"type": "string"},
        "example": "default",
    },
    "item_id": {
        "description": "A wishlist item's id",
        "schema": {"type": "string"},
        "example": "i1",
    },
}

HEADERS: Mapping[str, dict[str, Any]] = {
    "X-Device-Id": {
        "description": "Which of the owner's devices makes the call (shown in events)",
        "schema": {"type": "string", "pattern": f"^({DEVICE_PATTERN.pattern})?$"},
        "example": "phone-1",
    },
    "Idempotency-Key": {
        "description": "Retries with the same key get the first answer again for 24 h",
        "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
        "example": "add-tshirt-7f3a",
    },
    "If-Match": {
        "description": 'Apply only at this revision ("N", W/"N"), or * for any',
        "schema": {"type": "string", "pattern": rf"^(\*|{_ETAG})$"},
        "example": "*",
    },
    "X-Support-Reason": {
        "description": "Support tokens: why they read, 1 to 500 characters (required for them; "
        "recorded and listed in the customer's export); percent-encoded UTF-8, docs/support.md",
        # No maxLength: other tokens never read it, so a longer one is not refused for them.
        "schema": {"type": "string"},
        "example": "ticket%204711",
    },
    "If-None-Match": {
        "description": "304 when the cart is still at one of these revisions (or *)",
        "schema": {"type": "string", "pattern": rf"^(\*|{_ETAG}( *, *{_ETAG})*)$"},
        "example": '"12"',
    },
}

RESPONSE_HEADERS: Mapping[str, dict[str, Any]] = {
    "ETag": {
        "description": "The owner's revision, quoted",
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    },
    "Idempotent-Replayed": {
        "description": "The first answer to this Idempotency-Key, replayed",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "Bearer challenge", "schema": {"type": "string"}},
}

_ERRORS: Mapping[int, tuple[str, tuple[str, ...]]] = {
    400: ("Malformed JSON, header or query", ()),
    401: ("Missing or invalid token", ("WWW-Authenticate",)),
    403: ("The token may not do this", ()),
    404: ("No such thing (or not yours)", ()),
    409: ("Conflicts with the current state", ()),
    412: ("If-Match names another revision (ETag: the current one)", ("ETag",)),
    413: ("Body too large", ()),
    415: ("Body is not JSON", ()),
    422: (
        "Invalid field, limit reached, a store or pick-up time the shop cannot take, or "
        "Idempotency-Key reused",
        (),
    ),
    429: ("Rate limited", ("Retry-After",)),
    503: ("Redis unreachable", ("Retry-After",)),
}

_PREFIXES: tuple[tuple[str, str, str, str], ...] = (
    # prefix, tag, operationId suffix, path parameter passed on by links
    ("/v1", "own data", "", ""),
    ("/v1/customers/{customer_id}", "service", "ForCustomer", "customer_id"),
    ("/v1/grants/{grant_id}", "staff", "ForGrant", "grant_id"),
)

_TAGS = [
    {"name": "own data", "description": "A customer's or guest's token: their own cart"},
    {
        "name": "service",
        "description": "A service token (the shop's back end): any customer; a support token "
        "(customer service): reads with a reason, and restores",
    },
    {"name": "staff", "description": "A staff token holding a grant the customer gave"},
    {"name": "public", "description": "Tokens, hand-off claims, stores, probes and metrics"},
]


class _Schemas:
    """JSON schemas of msgspec types, shared through components."""

    def __init__(self, types: Iterable[Any]) -> None:
        self.types = list(dict.fromkeys(types))
        schemas, self.components = msgspec.json.schema_components(
            self.types, ref_template="#/components/schemas/{name}"
        )
        self.by_type = dict(zip(self.types, schemas, strict=True))
        for t in self.types:
            if not isinstance(t, type):
                continue
            least = getattr(t, "min_properties", 0)
            if least:
                self.components[t.__name__]["minProperties"] = least
            exclusive = getattr(t, "exclusive", ())
            if exclusive:
                self.components[t.__name__]["not"] = {"required": list(exclusive)}

    def __getitem__(self, t: Any) -> dict[str, Any]:
        schema: dict[str, Any] = self.by_type[t]
        return schema


def build(endpoints: Iterable[Endpoint], public: Iterable[PublicRoute]) -> dict[str, Any]:
    endpoints, public = list(endpoints), list(public)
    types: list[Any] = [wire.ErrorBody]
    for ep in endpoints:
        types.extend(t for t in (ep.body, ep.response) if t is not None)
        types.extend(q.type_ for q in ep.query)
    for route in public:
        types.extend(a.type_ for a in route.answers.values() if a.type_ is not None)
        types.extend(q.type_ for q in route.query)
    schemas = _Schemas(types)
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        for prefix, tag, suffix, passed_on in _PREFIXES:
            if tag == "staff" and not ep.staff:
                continue
            op = _owner_operation(ep, schemas, tag, suffix, passed_on, endpoints)
            paths.setdefault(prefix + ep.path, {})[ep.method.lower()] = op
    for route in public:
        paths.setdefault(route.path, {})[route.method.lower()] = _public_operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cartsync",
            "version": __version__,
            "description": "Carts and wishlists kept in sync across a shopper's devices and the "
            'store tablet. Errors are always `{"error": {"code", "message", "field"?}}`; '
            "live updates are the websocket at /v1/ws (see /asyncapi.json).",
        },
        "servers": [{"url": "/", "description": "This service"}],
        "tags": _TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _owner_operation(
    ep: Endpoint,
    schemas: _Schemas,
    tag: str,
    suffix: str,
    passed_on: str,
    endpoints: list[Endpoint],
) -> dict[str, Any]:
    path_names = ([passed_on] if passed_on else []) + re.findall(r"{(\w+)}", ep.path)
    params = [_path_param(name, ep.reserved.get(name)) for name in path_names]
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": schemas[q.type_],
            **({"example": q.example} if q.example is not None else {}),
        }
        for q in ep.query
    ]
    headers = ["X-Device-Id"]
    if ep.mutation:
        headers += ["Idempotency-Key", "If-Match"]
    if ep.conditional:
        headers.append("If-None-Match")
    if ep.method == "GET" and suffix == "ForCustomer":
        headers.append("X-Support-Reason")
    params += [_header_param(name) for name in headers]

    success_headers = ("ETag", "Idempotent-Replayed") if ep.mutation else ("ETag",)
    links = _links(ep, suffix, passed_on, endpoints)
    responses: dict[str, Any] = {}
    first = "Created" if ep.status == 201 else "OK"
    for status, description in {ep.status: first, **ep.also}.items():
        answer: dict[str, Any] = {
            "description": description,
            "headers": _response_headers(success_headers, required=ep.mutation),
        }
        if ep.response is not None:
            answer["content"] = {"application/json": {"schema": schemas[ep.response]}}
        if links:
            answer["links"] = links
        responses[str(status)] = answer
    if ep.conditional:
        responses["304"] = {
            "description": "Not modified: still at the revision If-None-Match names",
            "headers": _response_headers(("ETag",), required=True),
        }
    writes = ep.mutation or ep.body is not None or ep.method == "POST"
    for status, (description, names) in _ERRORS.items():
        if (status == 409 and not writes) or (status == 412 and not ep.mutation):
            continue
        if status in (413, 415) and ep.body is None:
            continue
        responses[str(status)] = _error(schemas, description, names)

    op: dict[str, Any] = {
        "summary": ep.summary,
        "tags": [tag],
        "operationId": _operation_id(ep.operation, suffix),
        "parameters": params,
        "responses": responses,
        "security": [{"bearer": []}],
    }
    if ep.body is not None:
        content: dict[str, Any] = {"schema": schemas[ep.body]}
        if ep.example is not None:
            content["example"] = dict(ep.example)
        op["requestBody"] = {"required": True, "content": {"application/json": content}}
    return op


def _public_operation(route: PublicRoute, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in route.answers.items():
        entry: dict[str, Any] = {"description": answer.description}
        if answer.type_ is not None:
            schema = {"type": "string"} if answer.type_ is str else schemas[answer.type_]
            entry["content"] = {answer.media: {"schema": schema}}
            if answer.example is not None:
                entry["content"][answer.media]["example"] = answer.example
        if answer.headers:
            entry["headers"] = _response_headers(answer.headers, required=True)
        responses[str(status)] = entry
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": _operation_id(route.operation, ""),
        "responses": responses,
    }
    names = re.findall(r"{(\w+)}", route.path)
    params = [_path_param(name) for name in names] + [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": schemas[q.type_],
            **({"example": q.example} if q.example is not None else {}),
        }
        for q in route.query
    ]
    if params:
        op["parameters"] = params
    op["security"] = [{"bearer": []}] if route.token else []
    return op


def _links(ep: Endpoint, suffix: str, passed_on: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    by_name = {e.operation: e for e in endpoints}
    out: dict[str, Any] = {}
    for link in ep.links:
        target = by_name[link.target]
        if suffix == "ForGrant" and not target.staff:
            continue
        params = dict(link.params)
        if passed_on:
            params[passed_on] = f"$request.path.{passed_on}"
        out[_operation_id(link.target, "")[0].upper() + _operation_id(link.target, "")[1:]] = {
            "operationId": _operation_id(link.target, suffix),
            "parameters": params,
        }
    return out


def _path_param(name: str, reserved: frozenset[str] | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "path", "required": True, **PATH_PARAMS[name]}
    if reserved:
        param["schema"] = {**param["schema"], "not": {"enum": sorted(reserved)}}
        param["example"] = "w1"
    return param


def _header_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, **HEADERS[name]}


def _response_headers(names: Iterable[str], *, required: bool) -> dict[str, Any]:
    return {
        name: {**RESPONSE_HEADERS[name], "required": required and name != "Idempotent-Replayed"}
        for name in names
    }


def _error(schemas: _Schemas, description: str, headers: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schemas[wire.ErrorBody]}},
    }
    if headers:
        out["headers"] = _response_headers(headers, required=True)
    return out


def _operation_id(name: str, suffix: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p.title() for p in parts[1:]) + suffix
