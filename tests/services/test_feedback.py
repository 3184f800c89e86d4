"""Feedback through the services: graded once, sent once, shown again, never holding a reveal up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import ScheduleChange
from prepbot.core.events import Invocation, Place, ThreadReply
from prepbot.core.schedule import parse_weekdays
from prepbot.core.views import ErrorView, FeedbackView, MemberRef, Notice
from prepbot.llm_grader import LlmGrader
from prepbot.store.models import AnswerGrade, Round, Subscription
from tests.fakes import RecordingPlatform
from tests.llm_fake import FakeLlm

MONDAY = date(2026, 11, 30)
GRADIENT_SYNC = "google-gradient-sync-1000-gpus"
GOOD = (
    "I would use ring all-reduce: each GPU passes gradient chunks to its neighbour in a "
    "reduce-scatter and then an all-gather, so every worker ends with the averaged gradient."
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 9, 1, tzinfo=UTC))


def place(channel: str = "C1") -> Place:
    return Place("fake", "T1", channel, "Acme", channel.lower())


async def subscribe(app: App, **change: object) -> Subscription:
    change.setdefault("weekdays", parse_weekdays("daily"))
    return await app.services.admin.subscribe(place(), ScheduleChange(**change))  # type: ignore[arg-type]


async def round_of(app: App, subscription: Subscription, scenario_id: str, day: date) -> Round:
    """Post a round of one chosen scenario (the rotation's pick is overridden in the database)."""
    outcome = await app.services.rounds.post_round(subscription.id, day)
    assert outcome is not None
    async with app.db.transaction() as session:
        round_ = await session.get(Round, outcome.round.id)
        assert round_ is not None
        round_.scenario_id = scenario_id
    return round_


async def answer(app: App, round_: Round, who: str, text: str, message: str) -> None:
    assert round_.question_message_id is not None
    reply = ThreadReply(
        place(), round_.question_message_id, message, MemberRef(who, who), text, datetime.now(UTC)
    )
    await app.services.answers.record(reply)


async def prep(app: App, who: str, text: str) -> object:
    invocation = Invocation(place(), MemberRef(who, who), False, text)
    response = await app.services.commands.handle(invocation)
    (view,) = response.views
    assert response.private
    return view


async def test_each_on_time_answerer_gets_feedback_once_even_when_the_reveal_is_repaired(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await answer(app, round_, "bob", "Not sure, maybe a bigger GPU?", "b1")
    card = await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert card is not None
    assert card.graded == 2
    made = {c.point: c.made for c in card.coverage}
    scenario = app.services.ctx.catalog.get(GRADIENT_SYNC)
    assert scenario is not None
    assert scenario.rubric is not None
    ring = next(p for p in scenario.rubric.key_points if p.id == "ring-all-reduce")
    assert made[ring.point] == 1  # alice's, counted; nobody named

    feedback = {member.id: view for _, _, member, view in platform.feedback}
    assert set(feedback) == {"alice", "bob"}
    assert ring.point in feedback["alice"].made
    assert feedback["bob"].made == ()
    assert len(feedback["bob"].missed) == len(scenario.rubric.key_points)

    # A replica repairing the same reveal, and a second delivery pass, send nothing more.
    async with app.db.transaction() as session:
        stored = await session.get(Round, round_.id)
        assert stored is not None
        stored.reveal_message_id = None
        stored.lease_until = datetime.now(UTC) - timedelta(minutes=5)
    assert await app.services.rounds.take_over(round_.id)
    await app.services.rounds.republish_reveal(round_.id)
    await app.services.rounds.feedback.settle()
    await app.services.rounds.feedback.deliver(round_.id)
    assert len(platform.feedback) == 2


async def test_feedback_a_platform_would_not_deliver_is_still_shown_on_request(
    app: App, platform: RecordingPlatform
):
    platform.closed_dms.add("alice")
    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert platform.feedback == []
    async with app.db.transaction() as session:
        (status,) = (await session.scalars(select(AnswerGrade.feedback))).all()
    assert status == "closed"

    shown = await prep(app, "alice", "feedback")
    assert isinstance(shown, FeedbackView)
    assert shown.scenario_id == GRADIENT_SYNC
    assert shown.points >= 1
    assert isinstance(await prep(app, "alice", f"feedback {GRADIENT_SYNC}"), FeedbackView)
    missing = await prep(app, "alice", "feedback apple-calibration-equal-accuracy")
    assert isinstance(missing, ErrorView)
    assert isinstance(await prep(app, "zed", "feedback"), ErrorView)


async def test_a_member_who_turned_feedback_off_gets_no_message_but_is_still_graded(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app)
    off = await prep(app, "alice", "feedback off")
    assert isinstance(off, Notice)
    assert "off" in off.text
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert platform.feedback == []
    assert isinstance(await prep(app, "alice", "feedback"), FeedbackView)

    await prep(app, "alice", "feedback on")
    second = await round_of(app, subscription, GRADIENT_SYNC, MONDAY + timedelta(days=1))
    await answer(app, second, "alice", GOOD, "a2")
    await app.services.rounds.reveal_round(second.id)
    await app.services.rounds.feedback.settle()
    assert [member.id for _, _, member, _ in platform.feedback] == ["alice"]


async def test_a_failing_feedback_message_is_not_retried_and_does_not_fail_the_reveal(
    app: App, platform: RecordingPlatform, monkeypatch: pytest.MonkeyPatch
):
    async def refuse(*args: object, **kwargs: object) -> bool:
        raise TimeoutError("the platform did not answer")

    monkeypatch.setattr(platform, "send_feedback", refuse)
    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    card = await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert card is not None
    assert len(platform.reveals) == 1
    async with app.db.transaction() as session:
        (status,) = (await session.scalars(select(AnswerGrade.feedback))).all()
        revealed = await session.get(Round, round_.id)
    assert status == "failed"
    assert revealed is not None
    assert revealed.reveal_message_id == "r1"
    assert isinstance(await prep(app, "alice", "feedback"), FeedbackView)


async def test_a_slow_llm_grader_delays_the_reveal_by_its_deadline_at_most(
    app: App, platform: RecordingPlatform
):
    async with FakeLlm() as llm:
        llm.delay = 30
        grader = LlmGrader(base_url=llm.base_url, model="m", api_key=None, max_concurrency=4)
        app.services.ctx.grader = grader
        app.services.ctx.grading_deadline = 1.0
        try:
            subscription = await subscribe(app)
            round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
            await answer(app, round_, "alice", GOOD, "a1")
            started = time.monotonic()
            card = await app.services.rounds.reveal_round(round_.id)
            await app.services.rounds.feedback.settle()
            took = time.monotonic() - started
        finally:
            await grader.aclose()
    assert card is not None
    assert card.graded == 1
    assert took < 5, f"the reveal waited {took:.1f} s for a grader with a 1 s deadline"
    (_, _, _, feedback) = platform.feedback[0]
    assert feedback.points >= 1  # the rubric graded it
    problems = app.services.ctx.problems.current("grading")
    assert problems
    assert "rubric grader graded them instead" in problems[0].message


async def test_hiring_side_scenarios_reach_only_groups_that_ask_for_them(app: App):
    catalog = app.services.ctx.catalog
    hiring = {s.id for s in catalog.scenarios if s.audience.value == "hiring"}
    assert hiring, "the bank marks its hiring-side scenarios"
    candidates = await subscribe(app)
    assert not hiring & {s.id for s in app.services.rounds.eligible(candidates)}
    async with app.db.transaction() as session:
        stored = await session.get(Subscription, candidates.id)
        assert stored is not None
        stored.topics = ["hiring"]
    async with app.db.transaction() as session:
        asked = await session.get(Subscription, candidates.id)
    assert asked is not None
    assert {s.id for s in app.services.rounds.eligible(asked)} == hiring


async def test_a_hint_nudges_without_giving_the_reveal_away(app: App, platform: RecordingPlatform):
    subscription = await subscribe(app)
    assert isinstance(await prep(app, "alice", "hint"), ErrorView)  # nothing open yet
    await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    hint = await prep(app, "alice", "hint")
    assert isinstance(hint, Notice)
    scenario = app.services.ctx.catalog.get(GRADIENT_SYNC)
    assert scenario is not None
    assert scenario.hints
    assert all(h in hint.text for h in scenario.hints)
    assert not any(insight in hint.text for insight in scenario.insights)


async def test_key_points_break_ties_between_members_with_as_many_on_time_answers(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app)
    for day, (alice_text, bob_text) in enumerate(((GOOD, "no idea"), ("no idea", "no idea"))):
        round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY + timedelta(days=day))
        await answer(app, round_, "bob", bob_text, f"b{day}")
        await answer(app, round_, "alice", alice_text, f"a{day}")
        await app.services.rounds.reveal_round(round_.id)
        await app.services.rounds.feedback.settle()
    board = await app.services.commands.handle(
        Invocation(place(), MemberRef("bob", "bob"), False, "leaderboard all")
    )
    (view,) = board.views
    rows = [(r.member.id, r.on_time, r.points, r.rank) for r in view.rows]  # type: ignore[union-attr]
    assert rows[0][0] == "alice"
    assert rows[0][1:3] == (2, rows[0][2])
    assert rows[0][2] >= 1
    assert rows[1] == ("bob", 2, 0, 2)
    await asyncio.sleep(0)


async def test_feedback_a_restart_interrupted_goes_out_at_the_next_tick(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    from prepbot.scheduling import RoundScheduler

    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await answer(app, round_, "bob", "no idea", "b1")
    await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    # The process died before sending bob's: his row is still pending.
    async with app.db.transaction() as session:
        grades = (await session.scalars(select(AnswerGrade))).all()
        for grade in grades:
            if grade.member_id != min(g.member_id for g in grades):
                grade.feedback = "pending"
    sent_before = len(platform.feedback)
    await RoundScheduler(app.services).tick()
    await app.services.rounds.feedback.settle()
    assert len(platform.feedback) == sent_before + 1
    await RoundScheduler(app.services).tick()
    await app.services.rounds.feedback.settle()
    assert len(platform.feedback) == sent_before + 1, "sent once, not again at the next tick"


async def test_answers_are_graded_as_they_are_stored_and_again_when_edited(
    app: App, platform: RecordingPlatform
):
    from prepbot.core.events import ReplyEdited

    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await app.services.rounds.feedback.settle()
    async with app.db.transaction() as session:
        (early,) = (await session.scalars(select(AnswerGrade))).all()
    assert early.points >= 2  # graded before the reveal: the reveal has less to do
    assert round_.question_message_id is not None
    edit = ReplyEdited(
        place(),
        round_.question_message_id,
        "a1",
        MemberRef("alice", "alice"),
        "Honestly no idea.",
        datetime.now(UTC),
    )
    await app.services.answers.edit(edit)
    await app.services.rounds.feedback.settle()
    async with app.db.transaction() as session:
        (regraded,) = (await session.scalars(select(AnswerGrade))).all()
    assert regraded.points == 0
    await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    ((_, _, _, feedback),) = platform.feedback
    assert feedback.made == ()  # the edited answer, not the first one


async def test_the_reveal_grades_again_an_answer_changed_after_its_early_grade(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await app.services.rounds.feedback.settle()
    app.services.answers.on_changed = None  # the early grading misses the next change
    await answer(app, round_, "alice", "Actually, scrap that: I have no idea.", "a2")
    async with app.db.transaction() as session:
        (early,) = (await session.scalars(select(AnswerGrade))).all()
    card = await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert card is not None
    assert card.graded == 1
    async with app.db.transaction() as session:
        (final,) = (await session.scalars(select(AnswerGrade))).all()
    assert final.text_hash != early.text_hash  # graded again: the answer is both replies now


async def test_turning_feedback_off_after_answering_still_stops_that_rounds_message(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app)
    round_ = await round_of(app, subscription, GRADIENT_SYNC, MONDAY)
    await answer(app, round_, "alice", GOOD, "a1")
    await app.services.rounds.feedback.settle()  # graded as stored, while the messages were on
    await prep(app, "alice", "feedback off")
    await app.services.rounds.reveal_round(round_.id)
    await app.services.rounds.feedback.settle()
    assert platform.feedback == []
    async with app.db.transaction() as session:
        (status,) = (await session.scalars(select(AnswerGrade.feedback))).all()
    assert status == "off"
