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


@dataclass(frozen=True)
class Draw:
    """A fault drawn for one call; ``rng`` goes on to draw its details (a Retry-After)."""

    kind: str
    processed: bool  # a timeout whose request is carried out before its answer is held back
    rng: random.Random


@dataclass
class Chaos:
    """A seeded random ``rate`` of calls fail with one of ``kinds``; timeouts hold ``hold`` s."""

    rate: float
    seed: int
    kinds: tuple[str, ...]
    hold: float
    counts: dict[str, int] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be some of {FAULT_KINDS}, not {sorted(self.kinds)}")

    def draw(self, key: str) -> Draw | None:
        """Decide whether the next call named ``key`` fails, and how."""
        n = self.counts[key] = self.counts.get(key, 0) + 1
        rng = random.Random(f"{self.seed}:{key}:{n}")
        if rng.random() >= self.rate:
            return None
        kind = rng.choice(self.kinds)
        return Draw(kind, kind == "timeout" and rng.random() < 0.5, rng)


class _HasKind(Protocol):
    kind: str


def count_kinds(injected: Iterable[_HasKind]) -> dict[str, int]:
    """Return how many faults of each kind were injected."""
    counts = dict.fromkeys(FAULT_KINDS, 0)
    for fault in injected:
        counts[fault.kind] += 1
    return counts
