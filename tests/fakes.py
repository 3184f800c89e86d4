"""Fakes at the edges where no wire exists: a chat platform that records what it is asked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prepbot.core.views import QuestionCard, RevealCard
from prepbot.services.ports import ChannelUnavailable


@dataclass
class RecordingPlatform:
    """A ChatPlatform fake that records every post and can refuse a channel."""

    name: str = "fake"
    questions: list[tuple[str, QuestionCard]] = field(default_factory=list)
    reveals: list[tuple[str, str, RevealCard]] = field(default_factory=list)
    gone: dict[str, str] = field(default_factory=dict)

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        if channel_id in self.gone:
            raise ChannelUnavailable(self.gone[channel_id])
        await asyncio.sleep(0)  # let a concurrent caller interleave
        self.questions.append((channel_id, card))
        return f"q{len(self.questions)}"

    async def post_reveal(
        self, channel_id: str, thread_id: str, card: RevealCard, *, community_id: str | None = None
    ) -> str:
        self.reveals.append((channel_id, thread_id, card))
        return f"r{len(self.reveals)}"
