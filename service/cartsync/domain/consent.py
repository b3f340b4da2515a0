"""Consent: a customer lets one staff member of one store see and edit their data, for a while."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import msgspec

from cartsync.domain.principal import Principal, Role

CODE_DIGITS = 8


class Grant(msgspec.Struct, frozen=True):
    """Access a customer consented to; revoking or expiry ends it."""

    id: str
    owner: str
    staff: str
    store: str
    created_at: str
    expires_at: str

    def allows(self, who: Principal, now: datetime) -> bool:
        """Only the staff member who claimed it, at that store, before it expires."""
        return (
            who.role is Role.STAFF
            and who.subject == self.staff
            and who.store == self.store
            and now < datetime.fromisoformat(self.expires_at.replace("Z", "+00:00"))
        )

    def seconds_left(self, now: datetime) -> float:
        return (
            datetime.fromisoformat(self.expires_at.replace("Z", "+00:00")) - now
        ).total_seconds()


def new_code() -> str:
    """A hand-off code: 8 random digits, easy to read out and type on a tablet."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def valid_code(code: str) -> bool:
    return len(code) == CODE_DIGITS and code.isdigit()


def utc_now() -> datetime:
    return datetime.now(UTC)
