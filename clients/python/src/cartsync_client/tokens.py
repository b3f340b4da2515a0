"""Where the client's bearer token comes from: a fixed string, or a provider it asks again.

A long-lived app's token expires while the app keeps running. With a provider (a callable,
sync or async, returning a token), the client asks for a token when it first needs one and
again whenever the service refuses the one it has (HTTP 401, or the live socket closed 1008
for its token), then repeats the refused request or connection once. Nothing else is reset: the
live subscription's revision, its ops waiting for an answer and their idempotency keys stay.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["TokenProvider", "TokenSource"]

TokenProvider = Callable[[], str | Awaitable[str]]
"""Returns a current token; called on first use and after the service refused the last one."""


class TokenSource:
    """The token in use, and the one provider call that replaces it when it was refused."""

    def __init__(self, token: str | TokenProvider) -> None:
        if isinstance(token, str):
            self._provider: TokenProvider | None = None
            self._token: str | None = token
        else:
            self._provider = token
            self._token = None
        self._lock = asyncio.Lock()
        self.calls = 0
        """How many times the provider was called."""

    @property
    def refreshable(self) -> bool:
        return self._provider is not None

    async def token(self) -> str:
        """The token to send now; asks the provider on first use."""
        if self._token is None:
            async with self._lock:
                if self._token is None:
                    self._token = await self._ask()
        return self._token

    async def refresh(self, refused: str) -> str | None:
        """A token other than ``refused``, or None when the provider has no better one.

        Concurrent callers refused with the same token share one provider call.
        """
        if self._provider is None:
            return None
        async with self._lock:
            if self._token is None or self._token == refused:
                self._token = await self._ask()
            fresh = self._token
        return None if fresh == refused else fresh

    async def _ask(self) -> str:
        assert self._provider is not None
        self.calls += 1
        answer = self._provider()
        token = await answer if inspect.isawaitable(answer) else answer
        if not isinstance(token, str) or not token:
            raise TypeError(f"the token provider returned {type(token).__name__}, not a token")
        return token
