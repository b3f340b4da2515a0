"""Who is calling, and whose data a caller may reach."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cartsync.errors import Forbidden, InvalidInput

SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9._@:|+-]{1,128}")
"""Subjects become part of Redis keys: no braces, so no one can steer the hash tag."""

DEVICE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    GUEST = "guest"
    STAFF = "staff"
    SERVICE = "service"
    SUPPORT = "support"
    """Customer service: reads any customer's data (each read audited, with a reason) and
    restores a cart to an earlier revision; changes nothing else (docs/support.md)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; ``store`` is set for staff only."""

    role: Role
    subject: str
    store: str | None = None


@dataclass(frozen=True)
class Owner:
    """Whose cart and wishlists: a customer or a guest."""

    kind: Role
    subject: str

    @property
    def id(self) -> str:
        return f"{'g' if self.kind is Role.GUEST else 'c'}:{self.subject}"

    @property
    def is_guest(self) -> bool:
        return self.kind is Role.GUEST

    @classmethod
    def parse(cls, owner_id: str) -> Owner:
        """The inverse of ``id``, for owner ids read back from storage."""
        prefix, _, subject = owner_id.partition(":")
        return cls(Role.GUEST if prefix == "g" else Role.CUSTOMER, subject)


def valid_subject(subject: str) -> bool:
    return SUBJECT_PATTERN.fullmatch(subject) is not None


def own_data(principal: Principal) -> Owner:
    """The owner a customer or guest acts on through ``/v1/...``."""
    if principal.role in (Role.CUSTOMER, Role.GUEST):
        return Owner(principal.role, principal.subject)
    raise Forbidden(
        f"a {principal.role} token has no cart of its own; use /v1/customers/{{id}}/..."
        if principal.role is Role.SERVICE
        else f"a {principal.role} token has no cart of its own"
    )


def customer_data(principal: Principal, customer_id: str) -> Owner:
    """The owner a back-end service (or support, web/support.py) reaches through
    ``/v1/customers/{id}/...``."""
    if principal.role not in (Role.SERVICE, Role.SUPPORT):
        raise Forbidden("only service and support tokens may act on other customers")
    if not valid_subject(customer_id):
        raise InvalidInput("customer id must match [A-Za-z0-9._@:|+-]{1,128}", field="customer_id")
    return Owner(Role.CUSTOMER, customer_id)


def device_id(raw: str | None) -> str | None:
    """Validate the optional X-Device-Id header that attributes changes to a device."""
    if raw is None or raw == "":
        return None
    if DEVICE_PATTERN.fullmatch(raw) is None:
        raise InvalidInput(
            "X-Device-Id must match [A-Za-z0-9._:-]{1,64}", code="bad_header", field="X-Device-Id"
        )
    return raw
