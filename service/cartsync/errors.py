"""The error tree: every failure a caller can see, free of HTTP.

    CartsyncError            base: a stable ``code``, a human ``message``, an optional ``field``
    ├── InvalidInput         the request is malformed or breaks a rule (400/422)
    │   └── LimitExceeded    a size or count limit would be passed (422)
    ├── Unauthenticated      no usable credentials (401)
    ├── Forbidden            authenticated, but not allowed to do this (403)
    ├── NotFound             no such line, wishlist, item, or not the caller's (404)
    ├── Conflict             the state forbids it right now (409)
    ├── RevisionMismatch     If-Match names a revision that is no longer current (412)
    ├── PayloadTooLarge      body over the configured maximum (413)
    ├── UnsupportedMediaType body is not JSON (415)
    ├── IdempotencyKeyReused the key was first used for a different request (422)
    ├── RateLimited          too many requests from one principal (429)
    └── StoreUnavailable     Redis cannot be reached (503)
        └── CatalogUnavailable  the shop's catalogue cannot price a line (503, failure mode closed)

``web/errors.py`` is the one place that turns these into HTTP responses.
"""

from __future__ import annotations


class CartsyncError(Exception):
    """Base of every error a caller can see."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(CartsyncError):
    """The request is malformed or breaks a rule."""

    code = "invalid_input"


class LimitExceeded(InvalidInput):
    """A size or count limit would be passed."""

    code = "limit_exceeded"


class Unauthenticated(CartsyncError):
    """No usable credentials were presented."""

    code = "unauthenticated"


class Forbidden(CartsyncError):
    """The caller is known but may not do this."""

    code = "forbidden"


class NotFound(CartsyncError):
    """The thing does not exist, or is not the caller's to see."""

    code = "not_found"


class Conflict(CartsyncError):
    """The current state forbids the change."""

    code = "conflict"


class RevisionMismatch(CartsyncError):
    """If-Match named a revision that is no longer current."""

    code = "revision_mismatch"

    def __init__(self, current_rev: int) -> None:
        super().__init__(
            f"the cart is at revision {current_rev}; reload and retry", field="If-Match"
        )
        self.current_rev = current_rev


class PayloadTooLarge(CartsyncError):
    """The body is larger than allowed."""

    code = "payload_too_large"


class UnsupportedMediaType(CartsyncError):
    """The body is not declared as JSON."""

    code = "unsupported_media_type"


class IdempotencyKeyReused(CartsyncError):
    """An Idempotency-Key came back with a different request."""

    code = "idempotency_key_reused"


class RateLimited(CartsyncError):
    """Too many requests from one principal."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests; retry in {retry_after} s")
        self.retry_after = retry_after


class StoreUnavailable(CartsyncError):
    """Redis cannot be reached or did not answer in time."""

    code = "store_unavailable"


class CatalogUnavailable(StoreUnavailable):
    """The shop's product catalogue is down, slow, or answered something unreadable."""

    code = "catalog_unavailable"


CODES: frozenset[str] = frozenset(
    {
        # Requests that cannot be read (400)
        "malformed_json",
        "too_deep",
        "duplicate_key",
        "bad_header",
        # A pick-up choice no store can take (400)
        "unknown_store",
        "invalid_pickup",
        # Who is calling (401, 403)
        "unauthenticated",
        "forbidden",
        # Nothing there (404, 405)
        "route_not_found",
        "method_not_allowed",
        "line_not_found",
        "wishlist_not_found",
        "item_not_found",
        "handoff_not_found",
        "grant_not_found",
        # The state forbids it (409, 412)
        "line_conflict",
        "wishlist_name_taken",
        "cart_merging",
        "guest_merged",
        "guest_merged_elsewhere",
        "cart_busy",
        "merge_not_claimed",
        "handoff_busy",
        "collection_unavailable",
        "revision_mismatch",
        "epoch_mismatch",
        # The body or a parameter breaks a rule (413, 415, 422)
        "payload_too_large",
        "unsupported_media_type",
        "invalid_field",
        "invalid_input",
        "limit_exceeded",
        "idempotency_key_reused",
        "cart_empty",
        "wishlist_protected",
        "invalid_guest_token",
        "unknown_op",
        "unknown_sku",
        "unknown_event_type",
        "reason_required",
        "restore_out_of_reach",
        # Try again later (429, 500, 503)
        "rate_limited",
        "internal_error",
        "store_unavailable",
        "catalog_unavailable",
    }
)
"""Every ``code`` a caller can get, in an HTTP error body or a websocket ``nack``: docs/api.md
lists exactly these, and tests/test_docs_contract.py finds every code the service and its Lua
scripts name in here. ``error``, ``not_found`` and ``conflict``, the codes of base classes
above, are never sent: every raise of those classes names its own code."""
