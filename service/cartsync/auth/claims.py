"""Verified claims in, ``Principal`` out: where an issuer's tokens say who the caller is.

cartsync's own tokens carry ``sub``, ``role`` and, for staff, ``store``. An identity provider
says the same things its own way (Keycloak: ``realm_access.roles``; Auth0: a namespaced claim
such as ``https://shop.example/roles``), so each issuer has a ``ClaimMap``. Every refusal names
the claim it missed, so an operator can fix the mapping from one log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cartsync.domain.principal import Principal, Role, valid_subject
from cartsync.errors import Unauthenticated
from cartsync.settings import IssuerConfig

_MISSING = object()
_ANY_ROLE = frozenset(r.value for r in Role)


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim called ``name``, else the one its dotted path leads to, else ``_MISSING``."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


@dataclass(frozen=True)
class ClaimMap:
    """How one issuer's claims name the subject, the role and a staff member's store."""

    subject_claim: str = "sub"
    role_claim: str = "role"
    roles: Mapping[str, str] = field(default_factory=dict)
    role: str | None = None
    store_claim: str = "store"
    allowed: frozenset[str] = _ANY_ROLE
    """cartsync's own tokens may be guests; a provider's may not (guests are ours to issue)."""
    role_lists: bool = True
    """Providers list roles; cartsync's own tokens carry exactly one."""

    @classmethod
    def of(cls, issuer: IssuerConfig) -> ClaimMap:
        return cls(
            subject_claim=issuer.subject_claim,
            role_claim=issuer.role_claim,
            roles=dict(issuer.roles),
            role=issuer.role,
            store_claim=issuer.store_claim,
            allowed=_ANY_ROLE - {Role.GUEST.value},
        )

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claim(claims, self.subject_claim)
        if subject is _MISSING:
            raise Unauthenticated(f"token lacks the {self.subject_claim!r} claim")
        if not isinstance(subject, str) or not valid_subject(subject):
            raise Unauthenticated(
                f"token subject (claim {self.subject_claim!r}) must match "
                "[A-Za-z0-9._@:|+-]{1,128}"
            )
        role = Role(self.role) if self.role is not None else self._role(claims)
        if role is not Role.STAFF:
            return Principal(role, subject)
        store = claim(claims, self.store_claim)
        if not isinstance(store, str) or not valid_subject(store):
            raise Unauthenticated(
                f"staff token needs a {self.store_claim!r} claim matching "
                "[A-Za-z0-9._@:|+-]{1,128}"
            )
        return Principal(role, subject, store)

    def _role(self, claims: Mapping[str, Any]) -> Role:
        found = claim(claims, self.role_claim)
        if found is _MISSING:
            raise Unauthenticated(f"token lacks the {self.role_claim!r} claim")
        values = [found] if isinstance(found, str) else found
        if not isinstance(values, list) or (not self.role_lists and values is found):
            raise Unauthenticated(f"token claim {self.role_claim!r} must be a string or a list")
        if self.roles:
            mapped = {self.roles[v] for v in values if isinstance(v, str) and v in self.roles}
        else:
            mapped = {v for v in values if isinstance(v, str) and v in self.allowed}
        if len(mapped) > 1:
            # Refused rather than guessed: one token must not be both a shopper and staff.
            raise Unauthenticated(
                f"token claim {self.role_claim!r} maps to several roles: {sorted(mapped)}"
            )
        if not mapped:
            known = sorted(self.roles) if self.roles else sorted(self.allowed)
            raise Unauthenticated(
                f"token claim {self.role_claim!r} names no role cartsync accepts "
                f"({', '.join(known)})"
            )
        return Role(mapped.pop())


OWN_CLAIMS = ClaimMap(role_lists=False)
"""cartsync's own tokens: ``sub``, ``role`` (any of ours, guests included) and ``store``."""
