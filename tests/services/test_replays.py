"""Platform events delivered one to four times and out of order store each answer once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import ScheduleChange
from prepbot.core.events import Place, ReplyEdited, ThreadReply
from prepbot.core.views import MemberRef
from prepbot.store.models import Answer, Member, Reply
from tests.fakes import RecordingPlatform

T0 = datetime(2026, 11, 30, 9, 5, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 9, 1, tzinfo=UTC))


async def open_round(app: App) -> tuple[Place, int, str]:
    """Subscribe channel C1 and post today's round; return the place, group and thread."""
    place = Place("fake", "T1", "C1")
    group = await app.services.admin.subscribe(place, ScheduleChange())
    outcome = await app.services.rounds.post_round(group.id, T0.date())
    assert outcome is not None
    thread = outcome.round.question_message_id
    assert thread is not None
    return place, group.id, thread


async def test_replayed_and_reordered_events_keep_each_answer_once_with_its_latest_edit(
    app: App, platform: RecordingPlatform
):
    place, _, thread = await open_round(app)
    rng = random.Random(20261128)
    expected: dict[str, str] = {}
    for case in range(120):
        member = MemberRef(f"U{case}", f"member {case}")
        message = f"m{case}"
        texts = [f"answer {case} v{version}" for version in range(rng.randint(1, 5))]
        events: list[ThreadReply | ReplyEdited] = [
            ThreadReply(place, thread, message, member, texts[0], T0)
        ]
        events += [
            ReplyEdited(place, thread, message, member, text, T0 + timedelta(seconds=n))
            for n, text in enumerate(texts[1:], start=1)
        ]
        deliveries = [event for event in events for _ in range(rng.randint(1, 4))]
        rng.shuffle(deliveries)
        for event in deliveries:
            if isinstance(event, ReplyEdited):
                await app.services.answers.edit(event)
            else:
                await app.services.answers.record(event)
        expected[member.id] = texts[-1]
    async with app.db.transaction() as session:
        stored = dict(
            (
                await session.execute(
                    select(Member.external_id, Answer.text).join(
                        Answer, Answer.member_id == Member.id
                    )
                )
            ).all()
        )
        replies = await session.scalar(select(func.count()).select_from(Reply))
    assert stored == expected
    assert replies == len(expected)


async def test_replies_arriving_together_are_stored_as_if_one_after_another(
    app: App, platform: RecordingPlatform, monkeypatch: pytest.MonkeyPatch
):
    """Hundreds of replies at once (stored in batches): same answers, texts and outcomes."""
    import asyncio

    from prepbot.core.events import ReplyDeleted
    from prepbot.services.answers import AnswerService, AnswerStatus

    batches: list[int] = []
    record_many = AnswerService._record_many

    async def counted(self: AnswerService, replies: list[ThreadReply]) -> object:
        batches.append(len(replies))
        return await record_many(self, replies)

    monkeypatch.setattr(AnswerService, "_record_many", counted)
    place, group_id, thread = await open_round(app)
    answers = app.services.answers
    rng = random.Random(7)
    messages: dict[str, list[tuple[str, str]]] = {}  # member -> [(message id, text)] in order
    replies: list[ThreadReply] = []
    for case in range(60):
        member = MemberRef(f"U{case}", f"member {case}")
        for part in range(rng.randint(1, 3)):
            message, text = f"m{case}-{part}", f"answer {case} part {part}"
            at = T0 + timedelta(seconds=case * 10 + part)
            messages.setdefault(member.id, []).append((message, text))
            replies += [ThreadReply(place, thread, message, member, text, at)] * rng.randint(1, 3)
    gone = ThreadReply(place, thread, "m-gone", MemberRef("U99", "member 99"), "oops", T0)
    await answers.withdraw(ReplyDeleted(place, thread, "m-gone", T0))  # deleted before it came
    replies.append(gone)
    rng.shuffle(replies)
    outcomes = await asyncio.gather(*(answers.record(r) for r in replies))

    assert max(batches) > 1, "the replies were stored in batches"
    recorded = [o for o in outcomes if o.status == AnswerStatus.RECORDED]
    distinct = sum(len(parts) for parts in messages.values())
    assert len(recorded) == distinct  # each message once; every other copy a duplicate
    assert {o.status for o in outcomes} == {AnswerStatus.RECORDED, AnswerStatus.DUPLICATE}

    await app.services.rounds.reveal_open(group_id)
    late = [
        ThreadReply(place, thread, f"late-{n}", MemberRef(f"L{n}", f"late {n}"), "late", T0)
        for n in range(20)
    ]
    late_outcomes = await asyncio.gather(*(answers.record(r) for r in late + late))
    assert sorted(o.status for o in late_outcomes) == sorted(
        [AnswerStatus.LATE] * 20 + [AnswerStatus.DUPLICATE] * 20
    )
    async with app.db.transaction() as session:
        stored = {
            external: (text, on_time)
            for external, text, on_time in (
                await session.execute(
                    select(Member.external_id, Answer.text, Answer.on_time).join(
                        Answer, Answer.member_id == Member.id
                    )
                )
            ).all()
        }
        reply_count = await session.scalar(select(func.count()).select_from(Reply))
    expected = {
        member: ("\n\n".join(text for _, text in parts), True) for member, parts in messages.items()
    } | {f"L{n}": ("late", False) for n in range(20)}
    assert stored == expected
    assert reply_count == distinct + 20


async def test_an_edit_waits_for_the_batches_storing_when_it_came(
    app: App, platform: RecordingPlatform, monkeypatch: pytest.MonkeyPatch
):
    """On PostgreSQL batches store side by side; an edit queued after its reply still wins."""
    import asyncio

    from prepbot.services.answers import AnswerService, AnswerStatus

    storing, most = 0, 0
    record_many = AnswerService._record_many

    async def slow(self: AnswerService, replies: list[ThreadReply]) -> object:
        nonlocal storing, most
        storing += 1
        most = max(most, storing)
        try:
            await asyncio.sleep(0.05)  # a slow server: the next batch fills meanwhile
            return await record_many(self, replies)
        finally:
            storing -= 1

    monkeypatch.setattr(AnswerService, "_record_many", slow)
    place, _, thread = await open_round(app)
    answers = app.services.answers
    stored: list[asyncio.Task[object]] = []
    for wave in range(4):
        for n in range(10):
            member = MemberRef(f"U{wave}-{n}", f"member {wave}-{n}")
            reply = ThreadReply(place, thread, f"m{wave}-{n}", member, f"first {wave}-{n}", T0)
            stored.append(asyncio.create_task(answers.record(reply)))
        await asyncio.sleep(0.01)  # the next wave comes while this one is being stored
    member = MemberRef("U3-9", "member 3-9")
    edit = ReplyEdited(place, thread, "m3-9", member, "edited", T0 + timedelta(seconds=5))
    edited = await answers.edit(edit)
    outcomes = await asyncio.gather(*stored)
    # Had the edit overtaken its reply, it would have stored the reply (as "edited") and the
    # reply itself would have come second, as a duplicate.
    assert edited.status == AnswerStatus.EDITED
    assert {o.status for o in outcomes} == {AnswerStatus.RECORDED}  # type: ignore[attr-defined]

    async with app.db.transaction() as session:
        texts = dict(
            (
                await session.execute(
                    select(Member.external_id, Answer.text).join(
                        Answer, Answer.member_id == Member.id
                    )
                )
            ).all()
        )
    assert len(texts) == 40
    assert texts["U3-9"] == "edited"
    assert texts["U0-0"] == "first 0-0"
    if app.db.is_sqlite:
        assert most == 1  # one writer at a time
    else:
        assert most > 1, "batches were stored side by side"


async def test_a_reply_delivered_after_a_later_one_makes_the_answer_start_at_its_time(
    app: App, platform: RecordingPlatform
):
    """Events can arrive out of order (a retried delivery, batches stored side by side)."""
    place, _, thread = await open_round(app)
    member = MemberRef("U1", "member 1")
    later = ThreadReply(place, thread, "m2", member, "second part", T0 + timedelta(minutes=1))
    earlier = ThreadReply(place, thread, "m1", member, "first part", T0)
    await app.services.answers.record(later)
    await app.services.answers.record(earlier)
    async with app.db.transaction() as session:
        ((text, first_reply_at),) = (
            await session.execute(select(Answer.text, Answer.first_reply_at))
        ).all()
    assert text == "first part\n\nsecond part"
    assert first_reply_at == T0
