"""Streak rules: how many rounds in a row a member answered on time.

Streaks count rounds, not calendar days: a day with no round never breaks one, and an open
round cannot break one before its reveal. Pure functions over round outcomes; no database, no
platform, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MILESTONES = (3, 5, 10, 20, 30, 50, 100, 200, 365)


@dataclass(frozen=True)
class StreakState:
    """A member's streak in one study group after some revealed rounds."""

    current: int = 0
    best: int = 0

    def after_round(self, answered_on_time: bool) -> StreakState:
        """Return the state after one more revealed round."""
        if not answered_on_time:
            return StreakState(current=0, best=self.best)
        current = self.current + 1
        return StreakState(current=current, best=max(self.best, current))


def streak_of(outcomes: Iterable[bool]) -> StreakState:
    """Return the streak after revealed rounds in order, True where answered on time."""
    state = StreakState()
    for on_time in outcomes:
        state = state.after_round(on_time)
    return state


def milestone_reached(before: int, after: int) -> int | None:
    """Return the milestone a streak just reached, if any."""
    for milestone in MILESTONES:
        if before < milestone <= after:
            return milestone
    return None
