"""Authentication: bearer tokens in, a Principal out; nothing else lives here."""

from cartsync.auth.tokens import TokenIssuer, TokenKeys, TokenVerifier, new_guest_subject

__all__ = ["TokenIssuer", "TokenKeys", "TokenVerifier", "new_guest_subject"]
