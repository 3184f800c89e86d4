"""Rotation: which scenario a study group gets next.

A subscription never repeats a scenario until every eligible one was used (a cycle); a
scenario added later joins the current cycle. The order is a seeded shuffle, so the same
subscription gets the same order on every replica. Pure; no database, no platform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pick:
    """The next scenario and the rotation cycle it belongs to."""

    scenario_id: str
    cycle: int


def rank(seed: str, cycle: int, scenario_id: str) -> bytes:
    """Return the sort key of a scenario within one cycle of one subscription."""
    return hashlib.sha256(f"{seed}\x00{cycle}\x00{scenario_id}".encode()).digest()


def next_pick(
    seed: str, eligible: Sequence[str], cycle: int, used_in_cycle: Collection[str]
) -> Pick | None:
    """Return the next scenario: the first unused one of this cycle, else start a new cycle."""
    if not eligible:
        return None
    remaining = [s for s in eligible if s not in used_in_cycle]
    if not remaining:
        cycle, remaining = cycle + 1, list(eligible)
    choice = min(remaining, key=lambda s: rank(seed, cycle, s))
    return Pick(scenario_id=choice, cycle=cycle)
