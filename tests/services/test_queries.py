"""Lookups through /prep: no spoilers of open rounds, and answers that agree with each other."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import ScheduleChange
from prepbot.core.events import Invocation, Place, ThreadReply
from prepbot.core.schedule import parse_weekdays
from prepbot.core.text import render_text
from prepbot.core.views import (
    ErrorView,
    LeaderboardView,
    MemberRef,
    QuestionCard,
    ScenarioDetail,
    SearchResults,
    StreakView,
    View,
)
from prepbot.store.models import Subscription
from tests.conftest import seed_catalog
from tests.fakes import RecordingPlatform

MONDAY = date(2026, 11, 30)
APPLE = "apple-calibration-equal-accuracy"  # the seed bank's only scenario on calibration
INSIGHT_WORDS = "temperature scaling isotonic"  # found only in APPLE's insights


@pytest.fixture(autouse=True)
def one_calibration_scenario(app: App, seed_bank: Path) -> None:
    """Serve the seed posts' bank, where APPLE is the only scenario on calibration."""
    app.services.ctx.catalog = seed_catalog(seed_bank)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 14, 1, tzinfo=UTC))  # 09:01 in New York


def place(channel: str = "C1", community: str = "T1") -> Place:
    return Place("fake", community, channel, "Acme", channel.lower())


async def subscribe(app: App, where: Place, **change: object) -> Subscription:
    change.setdefault("weekdays", parse_weekdays("daily"))
    return await app.services.admin.subscribe(where, ScheduleChange(**change))  # type: ignore[arg-type]


async def prep(app: App, text: str, where: Place | None = None, who: str = "alice") -> View:
    """Run /prep as a member and return the one view it answers with."""
    invocation = Invocation(where or place(), MemberRef(who, who.title()), who == "admin", text)
    response = await app.services.commands.handle(invocation)
    (view,) = response.views
    return view


async def open_calibration_round(app: App, where: Place) -> Subscription:
    """Post today's round of APPLE in a study group at ``where`` (New York time)."""
    subscription = await subscribe(
        app,
        where,
        topics=("calibration",),
        timezone="America/New_York",
        post_at=time(9, 0),
        reveal_at=time(17, 0),
    )
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    assert outcome.round.scenario_id == APPLE
    return subscription


async def test_show_withholds_an_open_rounds_reveal_anywhere_in_its_community(
    app: App, platform: RecordingPlatform
):
    insight = app.services.ctx.catalog.get(APPLE).insights[0]  # type: ignore[union-attr]
    group = await open_calibration_round(app, place("C1"))

    for where in (place("C1"), place("C-elsewhere")):  # a study group or not, same workspace
        view = await prep(app, f"show {APPLE}", where)
        assert isinstance(view, ScenarioDetail)
        assert view.reveal is None
        text = render_text(view)
        assert "Two models have identical 88% accuracy" in text  # the question is shown
        assert insight not in text
        assert "The trap" not in text
        assert "Follow-ups" not in text
        assert "in #c1 Mon 30 Nov 17:00 America/New_York" in text  # where and when it reveals

    other_community = await prep(app, f"show {APPLE}", place("C1", community="T2"))
    assert isinstance(other_community, ScenarioDetail)
    assert other_community.reveal is not None
    assert insight in render_text(other_community)

    await app.services.rounds.reveal_open(group.id)
    after = await prep(app, f"show {APPLE}", place("C1"))
    assert isinstance(after, ScenarioDetail)
    assert after.reveal is not None
    assert insight in render_text(after)


async def test_search_never_finds_an_open_round_by_the_words_of_its_answer(
    app: App, platform: RecordingPlatform
):
    group = await open_calibration_round(app, place("C1"))

    def ids(view: View) -> list[str]:
        assert isinstance(view, SearchResults)
        return [hit.scenario_id for hit in view.results]

    assert APPLE not in ids(await prep(app, f"search {INSIGHT_WORDS}", place("C2")))
    assert APPLE in ids(await prep(app, "search accuracy confidence", place("C2")))  # its question
    assert APPLE in ids(await prep(app, f"search {INSIGHT_WORDS}", place("C1", community="T2")))
    await app.services.rounds.reveal_open(group.id)
    assert APPLE in ids(await prep(app, f"search {INSIGHT_WORDS}", place("C2")))


async def test_ask_never_hands_out_a_question_open_in_the_community(
    app: App, platform: RecordingPlatform
):
    await open_calibration_round(app, place("C1"))
    refused = await prep(app, "ask calibration", place("C2"))
    assert isinstance(refused, ErrorView)
    assert "The only question on 'calibration' is open in #c1" in refused.text

    for seed in range(30):  # without a topic, every pick is another scenario
        view = await app.services.queries.ask(None, place("C2"), rng=random.Random(seed))
        assert isinstance(view, QuestionCard)
        assert view.scenario_id != APPLE

    elsewhere = await prep(app, "ask calibration", place("C1", community="T2"))
    assert isinstance(elsewhere, QuestionCard)
    assert elsewhere.scenario_id == APPLE


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("calibraton", "Did you mean `calibration`?"), ("LLM", None), ("LLMs", None)],
)
async def test_ask_forgives_case_plurals_and_suggests_the_nearest_topic(
    app: App, platform: RecordingPlatform, typed: str, expected: str | None
):
    view = await prep(app, f"ask {typed}", place("C9", community="T9"))
    if expected is None:
        assert isinstance(view, QuestionCard), view
        assert "Large language models" in view.topics
    else:
        assert isinstance(view, ErrorView)
        assert expected in view.text


async def test_after_the_reveal_post_now_and_today_agree_and_say_when_the_next_comes(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    group = await subscribe(
        app,
        place(),
        timezone="Europe/Paris",
        post_at=time(9, 0),
        weekdays=parse_weekdays("mon,wed,fri"),
    )
    posted = await prep(app, "post-now", who="admin")
    assert "Posted today's question." in render_text(posted)
    await app.services.rounds.reveal_open(group.id)

    again = render_text(await prep(app, "post-now", who="admin"))
    today = render_text(await prep(app, "today"))
    for text in (again, today):
        assert "Today's question was already revealed" in text
        assert "The next question comes Wed 2 Dec 09:00 Europe/Paris" in text
        assert "already posted" not in text
    assert again == today


async def test_streak_and_leaderboard_count_the_open_rounds_answer_alike(
    app: App, platform: RecordingPlatform
):
    group = await subscribe(app, place())
    rounds = app.services.rounds
    first = await rounds.post_round(group.id, MONDAY)
    assert first is not None
    reply = ThreadReply(
        place(), "q1", "m1", MemberRef("alice", "Alice"), "answer", datetime.now(UTC)
    )
    await app.services.answers.record(reply)
    await rounds.reveal_open(group.id)
    second = await rounds.post_round(group.id, date(2026, 12, 1))
    assert second is not None
    reply = ThreadReply(
        place(), "q2", "m2", MemberRef("alice", "Alice"), "answer", datetime.now(UTC)
    )
    await app.services.answers.record(reply)  # on time, in the round still open

    streak = await prep(app, "streak")
    board = await prep(app, "leaderboard all")
    assert isinstance(streak, StreakView)
    assert isinstance(board, LeaderboardView)
    (row,) = board.rows
    assert (streak.on_time, row.on_time) == (1, 1)
    assert "(+1 answer counts at the reveal)" in render_text(streak)
    assert "Answers to an open question count after its reveal." in render_text(board)

    await rounds.reveal_open(group.id)
    streak = await prep(app, "streak")
    board = await prep(app, "leaderboard all")
    assert isinstance(streak, StreakView)
    assert isinstance(board, LeaderboardView)
    assert (streak.on_time, board.rows[0].on_time) == (2, 2)
    assert "at the reveal" not in render_text(streak) + render_text(board)
