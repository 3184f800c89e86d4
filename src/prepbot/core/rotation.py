"""Rotation: which scenario a study group gets next, and which scenarios it may get at all.

A subscription never repeats a scenario until every eligible one was used (a cycle); a
scenario added later joins the current cycle. Within a cycle the next scenario is the one that
shares the fewest topics with the last few rounds (and not a third of the same difficulty in a
row), ties broken by a seeded shuffle, so the same subscription gets the same order on every
replica and a group never runs through one area. Pure; imports the content model only, no
database, no platform.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prepbot.content.model import Audience, Scenario

HIRING_TOPIC = "hiring"  # the topic a group names to get the hiring side's scenarios too
FEW_MATCHING = 10  # a filter matching fewer scenarios than this is warned about at once
FEW_LEFT = 5  # admins are told when fewer unused scenarios than this remain in a cycle
RECENT = 3  # how many past rounds the mix looks back on
TOPIC_WEIGHTS = (3, 2, 1)  # cost of sharing a topic with the last, second and third round
LEVEL_WEIGHT = 4  # cost of a difficulty with few unused scenarios left, against the commonest


@dataclass(frozen=True)
class Candidate:
    """A scenario as the rotation sees it: its id, topics and difficulty."""

    id: str
    topics: frozenset[str] = frozenset()
    difficulty: str = ""

    @classmethod
    def of(cls, scenario: Scenario) -> Candidate:
        """Return the rotation's view of a scenario."""
        return cls(scenario.id, frozenset(scenario.topics), scenario.difficulty.value)


@dataclass(frozen=True)
class Pick:
    """The next scenario and the rotation cycle it belongs to."""

    scenario_id: str
    cycle: int
    left_after: int  # unused scenarios left in the cycle once this one is posted


def matching(
    scenarios: Iterable[Scenario], topics: Collection[str], difficulties: Collection[str]
) -> list[Scenario]:
    """Return the scenarios a group's filters allow.

    Scenarios for the hiring side (``audience: hiring``) reach only a group whose topic filter
    names ``hiring``: a candidates' study group does not get them by default.
    """
    wanted, levels = set(topics), set(difficulties)
    return [
        s
        for s in scenarios
        if (not wanted or wanted & set(s.topics))
        and (not levels or s.difficulty.value in levels)
        and (s.audience is Audience.CANDIDATES or HIRING_TOPIC in wanted)
    ]


def rank(seed: str, cycle: int, scenario_id: str) -> bytes:
    """Return the sort key of a scenario within one cycle of one subscription."""
    return hashlib.sha256(f"{seed}\x00{cycle}\x00{scenario_id}".encode()).digest()


def clash(
    candidate: Candidate, recent: Sequence[Candidate], left: Mapping[str, int] | None = None
) -> float:
    """Return how much a candidate repeats the last rounds: shared topics, same difficulty.

    ``left`` counts the cycle's unused scenarios per difficulty: a difficulty with fewer left
    costs a little more, so each is spread over the cycle at its own rate instead of the
    commonest piling up at the end.
    """
    cost: float = sum(
        weight * len(candidate.topics & before.topics)
        for weight, before in zip(TOPIC_WEIGHTS, recent, strict=False)
    )
    levels = [before.difficulty for before in recent[:2]]
    if levels and candidate.difficulty == levels[0]:
        cost += 1
        if len(levels) == 2 and candidate.difficulty == levels[1]:
            cost += 3
    if left:
        cost += LEVEL_WEIGHT * (1 - left.get(candidate.difficulty, 0) / max(left.values()))
    return cost


def next_pick(
    seed: str,
    eligible: Sequence[Candidate],
    cycle: int,
    used_in_cycle: Collection[str],
    recent: Sequence[Candidate] = (),
) -> Pick | None:
    """Return the next scenario: the least repetitive unused one of this cycle, else a new cycle.

    ``recent`` is the group's last rounds, most recent first. A new cycle never starts with the
    scenario posted last, so a group with two or more scenarios never gets one twice in a row.
    """
    if not eligible:
        return None
    unused = [c for c in eligible if c.id not in used_in_cycle]
    if not unused:
        cycle, unused = cycle + 1, list(eligible)
    choices = unused
    if recent and len(unused) > 1:
        choices = [c for c in unused if c.id != recent[0].id]
    window = recent[:RECENT]
    left = Counter(c.difficulty for c in unused)
    choice = min(choices, key=lambda c: (clash(c, window, left), rank(seed, cycle, c.id)))
    return Pick(scenario_id=choice.id, cycle=cycle, left_after=len(unused) - 1)
