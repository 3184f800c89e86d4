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


async def test_replayed_and_reordered_events_keep_each_answer_once_with_its_latest_edit(
    app: App, platform: RecordingPlatform
):
    place = Place("fake", "T1", "C1")
    group = await app.services.admin.subscribe(place, ScheduleChange())
    outcome = await app.services.rounds.post_round(group.id, T0.date())
    assert outcome is not None
    thread = outcome.round.question_message_id
    assert thread is not None
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
