"""Pacing: keeping outgoing messages within a platform's per-channel and per-community rates.

A ``Pacer`` hands out send times one ``interval`` apart per key (a channel, a workspace), in the
order callers ask, so many keys proceed side by side while each keeps to its own rate; a
rate-limit answer holds a key until its Retry-After. The interval carries a safety margin
(``SAFETY_MARGIN``): a limiter counts from when each request reaches it, and a request that
travelled faster than the one before would otherwise arrive less than an interval after it.
Time and sleep are injected so tests can run it on a manual clock. Imports no chat platform
library, no database and no service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

PRUNE_FLOOR = 1024  # keys kept before looking for finished ones to forget
SAFETY_MARGIN = 0.1  # sends go 10% further apart than the platform's limit asks


class Pacer:
    """Space sends per key ``interval`` seconds apart, plus a margin; first come, first served."""

    def __init__(
        self,
        interval: float,
        *,
        margin: float = SAFETY_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if interval < 0 or margin < 0:
            raise ValueError("a pacing interval and its margin cannot be negative")
        self.interval = interval * (1 + margin)
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}  # the earliest a key's next send may go
        self._held: dict[str, float] = {}  # a key sends nothing before this (a Retry-After)
        self._prune_at = PRUNE_FLOOR

    async def wait(self, key: str) -> None:
        """Wait for ``key``'s next free send time and take it."""
        while True:
            now = self._clock()
            at = max(now, self._next.get(key, now))
            self._next[key] = at + self.interval
            self._prune(now)
            if at > now:
                await self._sleep(at - now)
            if self._clock() >= self._held.get(key, 0.0):
                return
            # A hold came in while this caller slept: queue again behind it.

    def hold(self, key: str, seconds: float) -> None:
        """Send nothing for ``key`` during the next ``seconds`` (a rate-limit answer's wait)."""
        until = self._clock() + seconds
        self._held[key] = max(self._held.get(key, until), until)
        self._next[key] = max(self._next.get(key, until), until)

    def sent(self, key: str) -> None:
        """Note that ``key`` sent just now, so its next send is an interval from now."""
        self.hold(key, self.interval)

    def _prune(self, now: float) -> None:
        """Forget keys whose next send time and hold are both past (they are free again)."""
        if len(self._next) < self._prune_at:
            return
        for key in [k for k, at in self._next.items() if at <= now]:
            if self._held.get(key, 0.0) <= now:
                self._next.pop(key)
                self._held.pop(key, None)
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self._next))
