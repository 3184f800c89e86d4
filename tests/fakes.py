"""Fakes at the edges where no wire exists: a chat platform that records what it is asked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from prepbot.core.views import DigestCard, FeedbackView, MemberRef, QuestionCard, RevealCard
from prepbot.services.ports import ChannelUnavailable


@dataclass
class RecordingPlatform:
    """A ChatPlatform fake that records every post and can refuse a channel.

    ``hold`` makes each post wait on an event before it answers (a slow platform); ``lost``
    makes the next posts fail after the message was made (the answer was lost on the way).
    """

    name: str = "fake"
    questions: list[tuple[str, QuestionCard]] = field(default_factory=list)
    reveals: list[tuple[str, str, RevealCard]] = field(default_factory=list)
    gone: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    lost: int = 0
    feedback: list[tuple[str, str, MemberRef, FeedbackView]] = field(default_factory=list)
    closed_dms: set[str] = field(default_factory=set)  # members whose feedback is refused
    counts: list[tuple[str, str, int | None]] = field(default_factory=list)
    notices: list[tuple[str, str, MemberRef, str]] = field(default_factory=list)
    digests: list[tuple[str, DigestCard, bytes | None]] = field(default_factory=list)

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        if channel_id in self.gone:
            raise ChannelUnavailable(self.gone[channel_id])
        await asyncio.sleep(0)  # let a concurrent caller interleave
        self.questions.append((channel_id, card))
        await self._answer()
        return f"q{len(self.questions)}"

    async def post_reveal(
        self, channel_id: str, thread_id: str, card: RevealCard, *, community_id: str | None = None
    ) -> str:
        self.reveals.append((channel_id, thread_id, card))
        await self._answer()
        return f"r{len(self.reveals)}"

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        if member.id in self.closed_dms:
            return False
        self.feedback.append((channel_id, thread_id, member, feedback))
        return True

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        self.counts.append((channel_id, thread_id, card.answer_count))

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        self.notices.append((channel_id, thread_id, member, text))
        return True

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        for number, (channel, posted) in enumerate(self.questions, start=1):
            if channel == channel_id and (posted.round_date, posted.scenario_id) == (
                card.round_date,
                card.scenario_id,
            ):
                return f"q{number}"
        return None

    async def find_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        for number, (channel, thread, _) in enumerate(self.reveals, start=1):
            if (channel, thread) == (channel_id, thread_id):
                return f"r{number}"
        return None

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        if channel_id in self.gone:
            raise ChannelUnavailable(self.gone[channel_id])
        await asyncio.sleep(0)
        self.digests.append((channel_id, card, picture))
        await self._answer()
        return f"d{len(self.digests)}"

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        for number, (channel, posted, _) in enumerate(self.digests, start=1):
            if channel == channel_id and posted.period_end == card.period_end:
                return f"d{number}"
        return None

    async def _answer(self) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.lost > 0:
            self.lost -= 1
            raise TimeoutError("the platform made the message but its answer was lost")
