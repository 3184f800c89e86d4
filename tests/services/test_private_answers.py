"""Private answers through the services: stored once, editable, withdrawable, then revealed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import AnswerPrivately, CommandError, ScheduleChange, parse_prep
from prepbot.core.events import Invocation, Place, PrivateAnswer, ThreadReply
from prepbot.core.schedule import parse_weekdays
from prepbot.core.text import render_text
from prepbot.core.views import (
    ErrorView,
    MemberRef,
    Notice,
    QuestionCard,
    Response,
    StatusView,
    fold,
    share_within,
)
from prepbot.core.views import SharedAnswer as Shared
from prepbot.services.answers import AnswerStatus
from prepbot.services.private import PUBLIC_REPLY_REMINDER
from prepbot.store.models import Answer, Member, Subscription
from tests.fakes import RecordingPlatform

MONDAY = date(2026, 11, 30)
WHERE = Place("fake", "T1", "C1", "Acme", "study")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 9, 1, tzinfo=UTC))


async def private_group(app: App) -> Subscription:
    return await app.services.admin.subscribe(
        WHERE, ScheduleChange(weekdays=parse_weekdays("daily"), answer_mode="private")
    )


async def open_round(app: App) -> tuple[int, str]:
    subscription = await private_group(app)
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    assert outcome.round.question_message_id is not None
    return outcome.round.id, outcome.round.question_message_id


def member(who: str) -> MemberRef:
    return MemberRef(who, who.title())


def said(response: Response) -> str:
    """Return the text of a response's one notice or error."""
    (view,) = response.views
    assert isinstance(view, Notice | ErrorView)
    return view.text


def submit(thread: str | None, submission: str, who: str, text: str) -> PrivateAnswer:
    return PrivateAnswer(WHERE, thread, submission, member(who), text, datetime.now(UTC))


async def answers_of(app: App, round_id: int) -> dict[str, str]:
    async with app.db.transaction() as session:
        rows = (await session.execute(select(Answer).where(Answer.round_id == round_id))).all()
        names = {m.id: m.external_id for m in (await session.scalars(select(Member))).all()}
    return {names[a.member_id]: a.text for (a,) in rows}


async def test_a_private_group_posts_a_question_that_says_how_to_answer_privately(
    app: App, platform: RecordingPlatform
):
    await open_round(app)
    (_, card) = platform.questions[0]
    assert card.private
    assert "🔒 Answers are private until the reveal" in render_text(card)
    assert "Answer in this thread" not in render_text(card)


async def test_submit_edit_withdraw_and_a_replay_leave_the_right_answers(
    app: App, platform: RecordingPlatform
):
    round_id, thread = await open_round(app)
    answers = app.services.answers
    outcomes = [
        await answers.answer_privately(submit(thread, "s1", "ada", "Ring all-reduce.")),
        await answers.answer_privately(submit(thread, "s2", "bob", "A parameter server.")),
        await answers.answer_privately(submit(thread, "s3", "bob", "Ring all-reduce, 2N.")),
        await answers.answer_privately(submit(thread, "s4", "cy", "Tree all-reduce.")),
        await answers.answer_privately(submit(thread, "s5", "cy", "")),
        await answers.answer_privately(submit(thread, "s1", "ada", "Ring all-reduce.")),
        await answers.answer_privately(submit(thread, "s2", "bob", "A parameter server.")),
    ]
    assert [o.status for o in outcomes] == [
        AnswerStatus.RECORDED,
        AnswerStatus.RECORDED,
        AnswerStatus.EDITED,
        AnswerStatus.RECORDED,
        AnswerStatus.WITHDRAWN,
        AnswerStatus.DUPLICATE,
        AnswerStatus.DUPLICATE,  # bob's first answer, replayed after his edit, stays replaced
    ]
    assert await answers_of(app, round_id) == {
        "ada": "Ring all-reduce.",
        "bob": "Ring all-reduce, 2N.",
    }
    assert await answers.private_answer(WHERE, thread, "bob") == "Ring all-reduce, 2N."
    assert await answers.private_answer(WHERE, None, "cy") == ""


async def test_the_same_submission_delivered_at_once_twice_is_stored_once(
    app: App, platform: RecordingPlatform
):
    _round_id, thread = await open_round(app)
    twice = submit(thread, "same", "ada", "Warmup then cosine decay.")
    outcomes = await asyncio.gather(
        *(app.services.answers.answer_privately(twice) for _ in range(2))
    )
    assert sorted(o.status for o in outcomes) == [AnswerStatus.DUPLICATE, AnswerStatus.RECORDED]
    async with app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Answer)) == 1


async def test_the_reveal_publishes_each_private_answer_once_with_its_author(
    app: App, platform: RecordingPlatform
):
    round_id, thread = await open_round(app)
    answers = app.services.answers
    await answers.answer_privately(submit(thread, "s1", "ada", "Ring all-reduce."))
    await answers.answer_privately(submit(thread, "s2", "bob", "A parameter server."))
    await answers.answer_privately(submit(thread, "s3", "bob", "Ring all-reduce, 2N."))
    await answers.answer_privately(submit(thread, "s4", "cy", "Tree."))
    await answers.answer_privately(submit(thread, "s5", "cy", ""))
    await answers.record(
        ThreadReply(WHERE, thread, "m1", member("dee"), "In the open.", datetime.now(UTC))
    )
    card = await app.services.rounds.reveal_round(round_id)
    assert card is not None
    assert [(a.member.id, a.text) for a in card.shared] == [
        ("ada", "Ring all-reduce."),
        ("bob", "Ring all-reduce, 2N."),
    ]  # dee's thread reply was public already; cy withdrew
    assert {m.id for m in card.on_time} == {"ada", "bob", "dee"}
    (_, _, posted) = platform.reveals[0]
    assert posted.shared == card.shared
    late = await answers.answer_privately(submit(thread, "s6", "eve", "After the reveal."))
    assert late.status == AnswerStatus.LATE


async def test_a_thread_reply_in_a_private_group_counts_and_its_author_is_reminded_once(
    app: App, platform: RecordingPlatform
):
    _round_id, thread = await open_round(app)
    for number in (1, 2):
        outcome = await app.services.answers.record(
            ThreadReply(
                WHERE, thread, f"m{number}", member("dee"), f"Reply {number}.", datetime.now(UTC)
            )
        )
        assert outcome.status == AnswerStatus.RECORDED
    await app.services.private.drain()
    assert [(n[2].id, n[3]) for n in platform.notices] == [("dee", PUBLIC_REPLY_REMINDER)]


async def test_the_count_follows_answers_coming_and_going_and_never_names_anyone(
    app: App, platform: RecordingPlatform
):
    app.services.private.pace = 0.01
    _round_id, thread = await open_round(app)
    answers = app.services.answers
    await answers.answer_privately(submit(thread, "s1", "ada", "One."))
    await answers.answer_privately(submit(thread, "s2", "bob", "Two."))
    await answers.answer_privately(submit(thread, "s3", "cy", "Three."))
    await answers.answer_privately(submit(thread, "s4", "cy", ""))
    for _ in range(100):
        await app.services.private.drain()
        if platform.counts and platform.counts[-1][2] == 2:
            break
        await asyncio.sleep(0.02)
    assert platform.counts[-1] == ("C1", thread, 2)
    assert len(platform.counts) <= 4  # paced: at most one edit per change, often fewer


async def test_a_burst_of_answers_edits_the_count_a_few_times_not_once_per_answer(
    app: App, platform: RecordingPlatform
):
    app.services.private.pace = 0.5
    _round_id, thread = await open_round(app)
    started = time.monotonic()
    await asyncio.gather(
        *(
            app.services.answers.answer_privately(submit(thread, f"s{n}", f"m{n}", "Yes."))
            for n in range(40)
        )
    )
    took = time.monotonic() - started  # a loaded machine stores the burst more slowly
    for _ in range(200):
        await asyncio.sleep(0.05)
        if platform.counts and platform.counts[-1][2] == 40:
            break
    assert platform.counts[-1][2] == 40
    assert len(platform.counts) <= 3 + int(took / 0.5)  # one edit per pace at most, not 40


async def test_prep_answer_stores_privately_and_says_so(app: App, platform: RecordingPlatform):
    round_id, thread = await open_round(app)
    commands = app.services.commands

    def run(text: str, who: str = "ada", request: str = "") -> Invocation:
        return Invocation(WHERE, member(who), False, text, request_id=request)

    stored = await commands.handle(run("answer Warm up, then\ndecay the rate.", request="t1"))
    assert isinstance(stored.views[0], Notice)
    assert stored.private
    assert "hidden from everyone until the reveal" in said(stored)
    assert await app.services.answers.private_answer(WHERE, thread, "ada") == (
        "Warm up, then\ndecay the rate."
    )
    again = await commands.handle(run("answer Warm up, then\ndecay the rate.", request="t1"))
    assert "already received" in said(again)
    withdrawn = await commands.handle(run("answer --withdraw", request="t2"))
    assert "withdrawn" in said(withdrawn)
    nothing = await commands.handle(run("answer --withdraw", request="t3"))
    assert "no answer to this question to withdraw" in said(nothing)
    assert await answers_of(app, round_id) == {}


async def test_prep_answer_in_a_thread_group_or_with_no_open_question_is_refused(
    app: App, platform: RecordingPlatform
):
    commands = app.services.commands
    await app.services.admin.subscribe(WHERE, ScheduleChange(weekdays=parse_weekdays("daily")))
    response = await commands.handle(Invocation(WHERE, member("ada"), False, "answer Hi"))
    assert isinstance(response.views[0], ErrorView)
    assert "reply there" in said(response)
    await commands.handle(Invocation(WHERE, member("root"), True, "schedule answers=private"))
    response = await commands.handle(Invocation(WHERE, member("ada"), False, "answer Hi"))
    assert isinstance(response.views[0], ErrorView)
    assert "no open question" in said(response)


async def test_the_answer_mode_is_set_by_schedule_and_shown_in_status(
    app: App, platform: RecordingPlatform
):
    commands = app.services.commands
    admin = member("root")
    await commands.handle(Invocation(WHERE, admin, True, "subscribe 09:00 UTC daily"))
    changed = await commands.handle(Invocation(WHERE, admin, True, "schedule answers=private"))
    assert "Answers are private until the reveal" in said(changed)
    status = (await commands.handle(Invocation(WHERE, admin, True, "status"))).views[0]
    assert isinstance(status, StatusView)
    assert status.answer_mode == "private"
    assert "Answers: 🔒 private until the reveal" in render_text(status)
    await app.services.private.drain()
    assert platform.counts == []  # no question open: nothing to edit
    wrong = await commands.handle(Invocation(WHERE, admin, True, "schedule answers=secret"))
    assert isinstance(wrong.views[0], ErrorView)
    assert "`thread`" in said(wrong)
    assert "`private`" in said(wrong)


def test_answer_commands_parse_with_their_line_breaks_and_refuse_what_is_unclear():
    assert parse_prep("answer  two\nlines ") == AnswerPrivately(text="two\nlines")
    assert parse_prep("ANSWER --withdraw") == AnswerPrivately(text="")
    with pytest.raises(CommandError, match="write your answer"):
        parse_prep("answer")
    with pytest.raises(CommandError, match="too long"):
        parse_prep("answer " + "x" * 5000)
    assert parse_prep("answer " + "x" * 3000) == AnswerPrivately(text="x" * 3000)


def test_long_answers_are_folded_to_share_the_room_and_the_rest_counted():
    many = tuple(Shared(member(f"m{n}"), "word " * 400) for n in range(30))
    shown, more = share_within(many, budget=6000, each_at_most=1000, each_at_least=200)
    assert len(shown) + more == 30
    assert sum(len(a.text) for a in shown) <= 6000
    assert all(a.text.endswith("… (folded)") for a in shown)
    few = (Shared(member("a"), "short"), Shared(member("b"), "word " * 400))
    shown, more = share_within(few, budget=6000, each_at_most=1000, each_at_least=200)
    assert more == 0
    assert shown[0].text == "short"
    assert len(shown[1].text) <= 1000
    assert fold("abc", 10) == "abc"


async def test_switching_the_mode_with_a_question_open_updates_that_question(
    app: App, platform: RecordingPlatform
):
    app.services.private.pace = 0.01
    commands = app.services.commands
    admin = member("root")
    await commands.handle(Invocation(WHERE, admin, True, "subscribe 09:00 UTC daily"))
    await commands.handle(Invocation(WHERE, admin, True, "post-now"))
    (_, posted) = platform.questions[0]
    assert not posted.private
    await commands.handle(Invocation(WHERE, admin, True, "schedule answers=private"))
    await app.services.private.drain()
    assert platform.counts == [("C1", "q1", 0)]  # the Answer button and "no answers yet"
    await asyncio.sleep(0.05)
    await commands.handle(Invocation(WHERE, admin, True, "schedule answers=thread"))
    await app.services.private.drain()
    assert platform.counts[-1] == ("C1", "q1", None)  # back to "answer in this thread"


async def test_the_answer_button_on_a_copy_of_the_question_answers_the_open_round(
    app: App, platform: RecordingPlatform
):
    round_id, _thread = await open_round(app)
    today = await app.services.queries.today(await app.services.admin.subscription(WHERE))
    assert isinstance(today, QuestionCard)
    assert today.private  # /prep today shows how to answer privately, with the button
    copy = await app.services.answers.answer_privately(submit("ephemeral-1", "s1", "ada", "Yes."))
    assert copy.status == AnswerStatus.RECORDED
    assert copy.round_id == round_id
    assert await app.services.answers.private_answer(WHERE, "ephemeral-2", "ada") == "Yes."


async def test_one_submission_reaching_two_replicas_at_once_is_stored_once(
    app: App, platform: RecordingPlatform, database_url: str, clock: ManualClock
):
    from prepbot.app import build_app
    from prepbot.settings import Settings

    round_id, thread = await open_round(app)
    replica = await build_app(Settings.model_validate({"database": {"url": database_url}}), clock)
    replica.services.ctx.platforms["fake"] = platform
    try:
        for number in range(10):
            same = submit(thread, f"twice-{number}", f"m{number}", f"Answer {number}.")
            outcomes = await asyncio.gather(
                app.services.commands.answer_privately(same),
                replica.services.commands.answer_privately(same),
            )
            texts = sorted(said(o) for o in outcomes)
            assert any("already received" in t for t in texts), texts
            assert any("stored, hidden" in t for t in texts), texts
    finally:
        await replica.close()
    stored = await answers_of(app, round_id)
    assert stored == {f"m{n}": f"Answer {n}." for n in range(10)}
