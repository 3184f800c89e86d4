"""Seeded fault injection shared by the Slack and Discord fakes: which call fails, and how.

Whether a call fails depends only on the seed, a key naming the call (its method and where it
goes) and how many calls with that key came before, so concurrent channels never change each
other's faults. Each fake decides what a fault looks like on its own wire. Imports no fake.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

FAULT_KINDS = ("429", "500", "timeout")
SLOW = "slow"  # carried out at once, answered after a random delay of up to ``max_delay``
KINDS = (*FAULT_KINDS, SLOW)


@dataclass(frozen=True)
class Draw:
    """A fault drawn for one call; ``rng`` goes on to draw its details (a Retry-After)."""

    kind: str
    processed: bool  # carried out before its answer is held back (a timeout's, a slow one's)
    rng: random.Random
    delay: float = 0.0  # how long a slow answer is held back, in seconds


@dataclass
class Chaos:
    """A seeded random ``rate`` of calls fail with one of ``kinds``; timeouts hold ``hold`` s.

    A ``slow`` call is carried out at once and answered after 0..``max_delay`` seconds (longer
    than the client waits, it is a timeout whose request was carried out).
    """

    rate: float
    seed: int
    kinds: tuple[str, ...]
    hold: float
    max_delay: float = field(default=0.0, kw_only=True)
    counts: dict[str, int] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be some of {KINDS}, not {sorted(self.kinds)}")

    def draw(self, key: str) -> Draw | None:
        """Decide whether the next call named ``key`` fails, and how."""
        n = self.counts[key] = self.counts.get(key, 0) + 1
        rng = random.Random(f"{self.seed}:{key}:{n}")
        if rng.random() >= self.rate:
            return None
        kind = rng.choice(self.kinds)
        if kind == SLOW:
            return Draw(kind, True, rng, rng.uniform(0, self.max_delay))
        return Draw(kind, kind == "timeout" and rng.random() < 0.5, rng)


class _HasKind(Protocol):
    kind: str


def count_kinds(injected: Iterable[_HasKind]) -> dict[str, int]:
    """Return how many faults of each kind were injected (slow answers only when there were)."""
    counts = dict.fromkeys(FAULT_KINDS, 0)
    for fault in injected:
        counts[fault.kind] = counts.get(fault.kind, 0) + 1
    return counts
