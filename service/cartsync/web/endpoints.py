"""The endpoint table: one declaration per route, from which routing and OpenAPI are built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from cartsync.domain.consent import utc_now
from cartsync.domain.model import Actor
from cartsync.domain.principal import (
    Owner,
    Principal,
    Role,
    customer_data,
    device_id,
    own_data,
)
from cartsync.errors import Forbidden, NotFound
from cartsync.storage.store import Mutation, WriteContext
from cartsync.web import inputs, support
from cartsync.web.commands import Command, Link, Pricer, fingerprint
from cartsync.web.services import Services

B = TypeVar("B")
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Call(Generic[B]):
    """Everything a handler needs, already authenticated, authorised and decoded."""

    request: Request
    services: Services
    principal: Principal
    owner: Owner
    body: B
    fingerprint: Callable[[], str]
    """What an Idempotency-Key is checked against; computed only when a key was sent."""

    @property
    def actor(self) -> Actor:
        return Actor(
            role=self.principal.role.value,
            id=self.principal.subject,
            device=device_id(self.request.headers.get("x-device-id")),
            store=self.principal.store,
        )

    def write_context(self) -> WriteContext:
        key = inputs.idempotency_key(self.request)
        return WriteContext(
            actor=self.actor,
            idempotency_key=key,
            fingerprint=self.fingerprint() if key is not None else "",
            expected_rev=inputs.expected_revision(self.request),
        )

    async def mutate(self, op: str, payload: dict[str, Any]) -> Response:
        """Run one store operation and send the body the script produced."""
        result = await self.services.store.mutate(self.owner, op, payload, self.write_context())
        return mutation_response(result)


def mutation_response(result: Mutation) -> Response:
    headers = {"ETag": f'"{result.rev}"'}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        result.body, status_code=result.status, media_type="application/json", headers=headers
    )


def json_response(value: object, status: int = 200, rev: int | None = None) -> Response:
    headers = {"ETag": f'"{rev}"'} if rev is not None else None
    return Response(
        _encoder.encode(value), status_code=status, media_type="application/json", headers=headers
    )


Handler = Callable[[Call[Any]], Awaitable[Response]]


@dataclass(frozen=True)
class QueryParam:
    """A query parameter a handler reads; ``type_`` is the msgspec type its schema comes from."""

    name: str
    type_: Any
    description: str
    example: object = None


@dataclass(frozen=True)
class Endpoint:
    """One route of an owner's data, served at ``/v1<path>`` and ``/v1/customers/{id}<path>``."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[Any] | None = None
    response: type[Any] | None = None
    status: int = 200
    mutation: bool = False
    staff: bool = True
    """Also served to staff at ``/v1/grants/{grant_id}<path>`` (the customer consented)."""
    query: tuple[QueryParam, ...] = ()
    also: Mapping[int, str] = field(default_factory=dict)
    """Other success statuses and when they are answered."""
    conditional: bool = False
    """Answers 304 to an ``If-None-Match`` naming its current ``ETag``."""
    example: Mapping[str, Any] | None = None
    links: tuple[Link, ...] = ()
    reserved: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Path parameter values refused (422) whatever the state, such as the system wishlists."""
    name: str = ""
    """The operation's name (OpenAPI operationId, link targets); the handler's name if empty."""

    @property
    def operation(self) -> str:
        return self.name or self.handler.__name__


def command_endpoint(command: Command) -> Endpoint:
    """The REST face of a command."""

    async def handler(call: Call[Any]) -> Response:
        params = {name: call.request.path_params[name] for name in command.params}
        services = call.services
        pricer = Pricer(
            call.principal.role,
            call.owner,
            services.pricing,
            services.store,
            services.settings.stores,
        )
        return await call.mutate(command.op, await command.payload(call.body, params, pricer))

    handler.__name__ = command.name
    return Endpoint(
        command.method,
        command.path,
        handler,
        command.summary,
        body=command.body,
        response=command.response,
        status=command.status,
        mutation=True,
        # Paying is the shop's and the customer's step; restoring is support's.
        staff=command.name not in ("checkout", support.RESTORE),
        also=command.also,
        example=command.example,
        links=command.links,
        reserved=command.reserved,
        name=command.name,
    )


@dataclass(frozen=True)
class Answer:
    """One documented answer of a public route."""

    description: str
    type_: Any = None
    """The msgspec type of a JSON body; ``str`` with another ``media`` for text."""
    media: str = "application/json"
    headers: tuple[str, ...] = ()
    example: object = None


@dataclass(frozen=True)
class PublicRoute:
    """A route outside the owner prefixes (tokens, probes, metrics), routed and documented."""

    method: str
    path: str
    view: Callable[[Request], Awaitable[Response]]
    summary: str
    answers: Mapping[int, Answer]
    token: bool = False
    """Takes a bearer token (documented in the summary which role)."""
    name: str = ""
    query: tuple[QueryParam, ...] = ()
    tag: str = "public"
    """The OpenAPI tag: ``service`` for a route only service tokens may use."""

    @property
    def operation(self) -> str:
        return self.name or self.view.__name__


Mode = Literal["self", "customer", "grant"]


async def resolve_owner(services: Services, principal: Principal, mode: Mode, params: Any) -> Owner:
    """Whose data a request reaches: the caller's own, a customer's (service tokens), or the
    one a grant names (the staff member it was granted to, until it ends)."""
    if mode == "customer":
        return customer_data(principal, params["customer_id"])
    if mode == "grant":
        if principal.role is not Role.STAFF:
            raise Forbidden("grants are used with staff tokens")
        grant = await services.store.grant(params["grant_id"])
        if grant is None or not grant.allows(principal, utc_now()):
            raise NotFound("no such grant, or it has ended", code="grant_not_found")
        return Owner.parse(grant.owner)
    return own_data(principal)


def owner_view(endpoint: Endpoint, mode: Mode) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint: authenticate, resolve the owner, rate limit, decode, handle."""

    async def view(request: Request) -> Response:
        services: Services = request.app.state.services
        principal = await services.authenticate(request)
        owner = await resolve_owner(services, principal, mode, request.path_params)
        await services.rate_limit(principal)
        await support.admit(services, principal, owner, endpoint.operation, request)
        device_id(request.headers.get("x-device-id"))  # refuse a bad header on reads too
        body: object = None
        if endpoint.body is not None:
            raw = await inputs.read_body(request, services.settings.max_body_bytes)
            request.state.body_read = True
            body = inputs.decode_body(raw, request.headers.get("content-type"), endpoint.body)

        def fp() -> str:
            if not endpoint.mutation:
                return ""
            params = {
                k: v for k, v in request.path_params.items() if k not in ("customer_id", "grant_id")
            }
            return fingerprint(endpoint.method, endpoint.path, params, body)

        return await endpoint.handler(Call(request, services, principal, owner, body, fp))

    return view
