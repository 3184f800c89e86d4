"""A member's streak calendar in /prep streak: the group's rounds, as this member answered them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.text import CALENDAR_LEGEND, render_text
from prepbot.core.views import LATE, MISSED, ON_TIME, MemberRef, StreakView
from prepbot.platforms.slack.blocks import render
from tests.fakes import RecordingPlatform
from tests.test_data_export import GROUPS, MEMBERS, START, simulate_month


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


async def test_the_streak_shows_each_round_of_the_last_weeks_as_the_member_answered_it(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    group = await app.services.admin.subscription(GROUPS[1])
    assert group is not None
    view = await app.services.queries.streak(group, MemberRef("bob", "Bob"))
    assert isinstance(view, StreakView)
    states = dict(view.calendar)
    number = MEMBERS.index("bob")
    for offset in range(30):  # simulate_month: a member skips every third day
        day = START + timedelta(days=offset)
        assert states[day] == (MISSED if (offset + number) % 3 == 0 else ON_TIME), day
    assert LATE not in states.values()  # only "eve" answered late
    eve = await app.services.queries.streak(group, MemberRef("eve", "Eve"))
    assert isinstance(eve, StreakView)
    assert dict(eve.calendar)[START] == LATE

    text = render_text(view).splitlines()
    assert text[1].startswith("The last 12 weeks (from ")
    rows = text[2:9]
    assert [row[:3] for row in rows] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    squares = "".join(row[4:] for row in rows)
    assert squares.count("🟩") == view.on_time == 20
    assert squares.count("🟥") == 10
    assert text[9] == CALENDAR_LEGEND
    slack = render(view)
    assert any("🟥" in str(block) for block in slack.blocks)


def test_a_streak_without_a_calendar_is_one_line():
    view = StreakView(MemberRef("x", "X"), 1, 2, 3, 0)
    assert render_text(view) == "@X: streak 1 (best 2), 3 on time, 0 late"
