"""Pacing: keeping outgoing messages within a platform's per-channel and per-community rates.

A ``Backlog`` sends follow-up calls (reactions to answers) per key at a platform's pace with a
burst allowed, and skips, counting them, those beyond what the platform would take in time.
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
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

PRUNE_FLOOR = 1024  # keys kept before looking for finished ones to forget
SAFETY_MARGIN = 0.1  # sends go 10% further apart than the platform's limit asks
log = logging.getLogger(__name__)


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


class HoldKey(Exception):
    """Raised by a follow-up the platform refused for now (a 429): its key waits ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"hold for {seconds:g} s")
        self.seconds = seconds


class Backlog:
    """Send follow-ups per key at a pace, ``burst`` at once, at most ``limit`` waiting.

    Each key (a workspace) has a token bucket: ``burst`` sends may go at once, then one per
    ``60 / per_minute`` seconds (plus the margin), one at a time. A follow-up submitted while
    ``limit`` already wait for its key is skipped and counted. Follow-ups are courtesies on
    something already stored (the ✅ on an answer): when answers come faster than the platform
    lets a bot react, sending them all would only earn 429s and retries for hours, and their
    calls would take the CPU that storing answers needs. A send that raises ``HoldKey`` (a
    429) goes back to the front of its queue and the key sends nothing for its Retry-After.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int,
        limit: int,
        margin: float = SAFETY_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1 or limit < 0:
            raise ValueError("a backlog needs a positive pace, a burst of 1 or more and a limit")
        self.interval = 60 / per_minute * (1 + margin)
        self.burst, self.limit = burst, limit
        self._clock, self._sleep = clock, sleep
        self._workers: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, deque[Callable[[], Awaitable[None]]]] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self.skipped = 0  # follow-ups skipped since start
        self._skipping: set[str] = set()  # keys skipping, till their backlog is half gone
        self._closed = False

    @property
    def waiting(self) -> int:
        """Count the follow-ups waiting to be sent, over every key."""
        return sum(len(queue) for queue in self._waiting.values())

    def submit(self, key: str, send: Callable[[], Awaitable[None]]) -> bool:
        """Queue ``send`` for ``key``; return False if it was skipped (``limit`` wait already)."""
        if self._closed:  # stopping: nothing waits for it now
            self.skipped += 1
            return False
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = deque()
            worker = asyncio.create_task(self._send_waiting(key, queue), name=f"backlog {key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        if len(queue) >= self.limit:
            self.skipped += 1
            if key not in self._skipping:
                self._skipping.add(key)
                log.warning(
                    "%s: more follow-ups than the platform takes (%d waiting, one per %.1f s): "
                    "skipping the newest until the backlog shrinks",
                    key,
                    len(queue),
                    self.interval,
                )
            return False
        if len(queue) < self.limit // 2:  # one warning per episode, not one per freed slot
            self._skipping.discard(key)
        queue.append(send)
        return True

    async def finish(self, timeout: float) -> int:
        """Send what waits for up to ``timeout`` seconds, then drop the rest; return how many.

        A send under way at the end is cancelled: its call may or may not have reached the
        platform, and a follow-up sent twice is harmless (``already_reacted``).
        """
        self._closed = True
        if self._workers:
            await asyncio.wait(set(self._workers), timeout=timeout)
        dropped = self.waiting
        for queue in self._waiting.values():
            queue.clear()
        workers = set(self._workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)
        return dropped

    async def _send_waiting(self, key: str, queue: deque[Callable[[], Awaitable[None]]]) -> None:
        """Send ``key``'s follow-ups in order as its bucket allows, until none wait."""
        try:
            while queue:
                await self._take(key)
                if not queue:  # dropped by finish() while this waited
                    break
                send = queue.popleft()
                try:
                    await send()
                except HoldKey as hold:  # refused for now: first again once the hold is over
                    queue.appendleft(send)
                    self._tokens[key] = (0.0, self._clock() + hold.seconds)
                except Exception:  # a send reports its own errors
                    log.debug("a follow-up for %s failed", key, exc_info=True)
        finally:
            if self._waiting.get(key) is queue:
                del self._waiting[key]
                self._skipping.discard(key)

    async def _take(self, key: str) -> None:
        """Wait for a token in ``key``'s bucket and take it."""
        while True:
            now = self._clock()
            tokens, counted = self._tokens.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - counted) / self.interval)
            if tokens >= 1:
                self._tokens[key] = (tokens - 1, now)
                return
            self._tokens[key] = (tokens, now)
            await self._sleep((1 - tokens) * self.interval)
