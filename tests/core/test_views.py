"""A reveal mentions at most MAX_MENTIONS members and counts the rest, in every rendering."""

from __future__ import annotations

import re

from prepbot.core.text import render_text
from prepbot.core.views import MAX_MENTIONS, MemberRef, Milestone, RevealCard


def reveal(on_time: int, late: int = 0, milestones: int = 0) -> RevealCard:
    members = tuple(MemberRef(f"U{n:05d}", f"member{n}") for n in range(on_time))
    return RevealCard(
        scenario_id="s",
        title="A question",
        insights=("Because.",),
        trap_answer=None,
        trap_why=None,
        follow_ups=(),
        source_author="someone",
        source_handle=None,
        source_url="https://example.com",
        on_time=members,
        late=tuple(MemberRef(f"L{n:05d}", f"late{n}") for n in range(late)),
        milestones=tuple(Milestone(m, 5) for m in members[:milestones]),
        is_round=True,
    )


def test_a_small_reveal_credits_everyone_by_name():
    credits = reveal(3, late=2, milestones=1).credits()
    assert (len(credits.on_time), len(credits.late), len(credits.milestones)) == (3, 2, 1)
    assert (credits.on_time_more, credits.late_more, credits.milestones_more) == (0, 0, 0)


def test_a_huge_reveal_mentions_at_most_the_limit_and_counts_the_rest():
    credits = reveal(2000, late=5, milestones=30).credits()
    shown = len(credits.on_time) + len(credits.late) + len(credits.milestones)
    assert shown == MAX_MENTIONS
    assert credits.on_time_more + len(credits.on_time) == 2000
    assert credits.late_more == 5
    assert credits.milestones_more + len(credits.milestones) == 30


def test_the_plain_text_reveal_names_fifty_and_states_how_many_others():
    text = render_text(reveal(2000))
    assert len(re.findall(r"@member\d+", text)) == MAX_MENTIONS
    assert "and 1,950 others — thank you!" in text
