"""The rubric grader: which key points an answer makes, which red flags it raises, and why.

Pure and deterministic: an answer's text and a scenario's rubric in, a ``Grade`` out. Owns
term matching (case, plurals, hyphenation, small typos), negation and the keyword-stuffing
rule. Imports only the content model; no database, no chat platform, no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prepbot.content.model import Rubric


@dataclass(frozen=True)
class PointMatch:
    """One key point (or red flag) found in an answer, with the answer's words that showed it."""

    id: str
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Grade:
    """What one answer covered against one rubric."""

    covered: tuple[PointMatch, ...]
    """Key points the answer made, in rubric order."""
    missed: tuple[str, ...]
    """Ids of the key points the answer did not make, in rubric order."""
    red_flags: tuple[PointMatch, ...]
    """Red flags the answer raised, in rubric order."""
    stuffed: bool = False
    """True when the answer reads as a bare list of terms, and so earned less credit."""

    @property
    def points(self) -> int:
        """Return the key points credited: the leaderboard's points for this answer."""
        return len(self.covered)

    @property
    def covered_ids(self) -> tuple[str, ...]:
        """Return the ids of the key points covered."""
        return tuple(m.id for m in self.covered)

    def to_json(self) -> dict[str, Any]:
        """Return the grade as plain JSON data (what ``prepbot content grade`` prints)."""
        return {
            "covered": [m.id for m in self.covered],
            "missed": list(self.missed),
            "red_flags": [m.id for m in self.red_flags],
            "matched": {m.id: list(m.matched) for m in (*self.covered, *self.red_flags)},
            "stuffed": self.stuffed,
        }

    @classmethod
    def from_ids(
        cls, rubric: Rubric, covered: list[str], red_flags: list[str], *, stuffed: bool = False
    ) -> Grade:
        """Build a grade from point ids (as the LLM grader or the database gives them).

        Ids the rubric does not know are dropped; order follows the rubric.
        """
        known = [p.id for p in rubric.key_points]
        flags = [f.id for f in rubric.red_flags]
        return cls(
            covered=tuple(PointMatch(i, ()) for i in known if i in covered),
            missed=tuple(i for i in known if i not in covered),
            red_flags=tuple(PointMatch(i, ()) for i in flags if i in red_flags),
            stuffed=stuffed,
        )


def grade(answer: str, rubric: Rubric) -> Grade:
    """Grade one answer against a rubric."""
    raise NotImplementedError  # the grader helper writes this
