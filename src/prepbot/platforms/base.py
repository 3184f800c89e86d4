"""The ChatPlatform protocol: what services need from a chat platform, and its errors.

Imports no concrete platform library; adapters under ``platforms/`` implement it.
"""

from __future__ import annotations

from typing import Protocol

from prepbot.core.views import QuestionCard, RevealCard


class ChannelUnavailable(Exception):
    """The channel is gone, archived or no longer lets the bot post; its subscription pauses."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatPlatform(Protocol):
    """A chat platform the bot posts rounds to."""

    name: str

    async def post_question(self, channel_id: str, card: QuestionCard) -> str:
        """Post the question of the day in a channel; return the message id its thread hangs on."""
        ...

    async def post_reveal(self, channel_id: str, thread_id: str, card: RevealCard) -> str:
        """Post the reveal in a round's thread; return the reveal's message id."""
        ...
