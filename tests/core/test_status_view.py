"""/prep status reads right as text, in Slack and in Discord: schedule, next, pause, rotation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from prepbot.core.pauses import explain_pause
from prepbot.core.text import relative, render_text
from prepbot.core.views import StatusProblem, StatusView
from prepbot.platforms.discord.embeds import PAUSED_COLOUR
from prepbot.platforms.discord.embeds import render as discord_render
from prepbot.platforms.slack.blocks import render as slack_render
from tests.platforms.discord.test_embeds_and_invite import within_limits
from tests.platforms.slack.test_blocks import assert_slack_accepts, shown

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 14:00 UTC = 14:00 in London
ARCHIVED = explain_pause("Slack: is_archived (the channel is archived)")

ACTIVE = StatusView(
    channel="#study",
    now=NOW,
    timezone="Europe/London",
    post_at="09:00",
    days="mon-fri",
    reveal="17:00",
    topics=("llm", "rag"),
    difficulties=("hard",),
    today="posted",
    today_date=date(2026, 3, 2),
    next_post=datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
    next_reveal=datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    next_reveal_is_open_round=True,
    paused=False,
    pause_cause=None,
    pause_next_step=None,
    pause_detail=None,
    paused_since=None,
    rotation_left=39,
    rotation_cycle=1,
    eligible=40,
)
PAUSED = replace(
    ACTIVE,
    today="none",
    next_post=None,
    next_reveal=None,
    next_reveal_is_open_round=False,
    paused=True,
    pause_cause=ARCHIVED.cause,
    pause_next_step=ARCHIVED.next_step(),
    pause_detail=ARCHIVED.detail,
    paused_since=datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC),
    rotation_left=40,
    problems=(StatusProblem("scheduler", "ticks are failing", NOW - timedelta(minutes=5)),),
)


def test_an_active_group_shows_its_schedule_filters_and_what_comes_next():
    assert render_text(ACTIVE).splitlines() == [
        "📋 Study group status — #study",
        "Schedule: posts at 09:00 (mon-fri, Europe/London); reveal 17:00",
        "Filters: topics llm, rag; difficulty hard",
        "Answers: in the question's thread, for everyone to read (`answers=private` hides them)",
        "Weekly digest: weekly, after the reveal of the week's last question "
        "(`digest=off` stops it)",
        "Today (Mon 2 Mar): question posted, answers open",
        "Next question: Tue 3 Mar 09:00 Europe/London (in 19 h)",
        "Next reveal: Mon 2 Mar 17:00 Europe/London (in 3 h)",
        "State: active (not paused)",
        "Rotation: 39 of 40 matching scenarios unused in cycle 1; none repeats before all are used",
        "Problems: none",
    ]


def test_a_paused_group_says_why_since_when_and_how_to_resume():
    text = render_text(PAUSED)
    assert "Next question: none while the group is paused" in text
    assert "Next reveal" not in text
    assert (
        "⏸ Paused: since Mon 2 Mar 09:00 Europe/London — the channel was archived "
        "(Slack: is_archived). To fix it: unarchive the channel, then run /prep resume."
    ) in text
    assert "Today (Mon 2 Mar): no question yet" in text
    assert "⚠ Problem (scheduler): ticks are failing (since Mon 2 Mar 13:55 Europe/London)" in text


def test_the_next_reveal_after_an_unposted_question_says_so():
    view = replace(
        ACTIVE,
        today="off",
        next_reveal=datetime(2026, 3, 3, 17, 0, tzinfo=UTC),
        next_reveal_is_open_round=False,
        topics=(),
        difficulties=(),
    )
    text = render_text(view)
    assert "Next reveal: Tue 3 Mar 17:00 Europe/London (in 1 day 3 h), after the next question" in (
        text
    )
    assert "Filters: none (every scenario in the bank)" in text
    assert "not one of the group's days" in text


def test_a_used_up_cycle_says_the_next_question_starts_a_new_one():
    text = render_text(replace(ACTIVE, rotation_left=0, rotation_cycle=2))
    rotation = "Rotation: 0 of 40 matching scenarios unused in cycle 2"
    assert f"{rotation}; the next question starts cycle 3" in text


@pytest.mark.parametrize(
    ("delta", "said"),
    [
        (timedelta(seconds=30), "now"),
        (timedelta(minutes=5), "in 5 min"),
        (timedelta(hours=3, minutes=20), "in 3 h 20 min"),
        (timedelta(days=2, hours=1, minutes=7), "in 2 days 1 h"),
        (-timedelta(minutes=90), "1 h 30 min ago"),
    ],
)
def test_relative_times_read_like_speech(delta: timedelta, said: str):
    assert relative(NOW + delta, NOW) == said


def test_slack_shows_every_line_bold_labelled_and_escaped():
    view = replace(PAUSED, channel="#a<b>&c")
    message = slack_render(view)
    assert_slack_accepts(message)
    text = shown(message)
    assert "📋 Study group status — #a<b>&c" in text  # a plain-text header needs no escaping
    assert "*⏸ Paused:* since Mon 2 Mar 09:00 Europe/London — the channel was archived" in text
    assert "*Rotation:* 40 of 40 matching scenarios unused" in text


def test_slack_cuts_a_flood_of_problems_to_fit():
    many = tuple(StatusProblem("x", "p" * 2000, NOW) for _ in range(120))
    message = slack_render(replace(PAUSED, problems=many))
    assert_slack_accepts(message)


def test_discord_shows_a_field_a_line_amber_while_paused():
    (embed,) = discord_render(PAUSED).embeds
    within_limits(embed)
    assert embed.colour is not None
    assert embed.colour.value == PAUSED_COLOUR
    fields = {field.name: field.value for field in embed.fields}
    assert fields["⏸ Paused"] is not None
    assert "unarchive the channel, then run /prep resume" in fields["⏸ Paused"]
    (active,) = discord_render(ACTIVE).embeds
    assert active.colour is not None
    assert active.colour.value != PAUSED_COLOUR


def test_discord_keeps_a_flood_of_problems_within_limits():
    many = tuple(StatusProblem("x", "p" * 2000, NOW) for _ in range(40))
    (embed,) = discord_render(replace(PAUSED, problems=many)).embeds
    within_limits(embed)
