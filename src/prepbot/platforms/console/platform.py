"""The console's ChatPlatform: prints what a chat platform would show, as plain text.

Imports no Slack or Discord library.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import TextIO

from prepbot.core.text import digest_lines, render_text
from prepbot.core.views import (
    DigestCard,
    FeedbackView,
    MemberRef,
    QuestionCard,
    Response,
    RevealCard,
    View,
    answer_count_line,
)

PLATFORM = "console"
COMMUNITY = "console"
CHANNEL = "study-group"


class ConsolePlatform:
    """Post rounds to the terminal."""

    name = PLATFORM

    def __init__(self, out: TextIO, message_ids: str = "m", pictures: Path | None = None) -> None:
        self.out = out
        self.pictures = pictures  # where digest pictures are saved (None: not saved)
        self._ids = itertools.count(1)
        self._prefix = message_ids

    def new_message_id(self) -> str:
        """Return a fresh message id, unique within this run."""
        return f"{self._prefix}{next(self._ids)}"

    def show(self, text: str) -> None:
        """Print one block of output, followed by a blank line."""
        self.out.write(text.rstrip("\n") + "\n\n")
        self.out.flush()

    def show_view(self, view: View, *, private: bool = False) -> None:
        """Print a view; a private one is marked as only the caller sees it."""
        text = render_text(view)
        self.show(f"(only you can see this)\n{text}" if private else text)

    def show_response(self, response: Response) -> None:
        """Print every view of a command's response."""
        for view in response.views:
            self.show_view(view, private=response.private)

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        """Print the question of the day in #channel and return its message id."""
        message_id = self.new_message_id()
        self.show(f"── #{channel_id} ──\n{render_text(card)}")
        return message_id

    async def post_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
    ) -> str:
        """Print the reveal in the round's thread and return its message id."""
        self.show(f"── thread of today's question in #{channel_id} ──\n{render_text(card)}")
        return self.new_message_id()

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Print a member's private feedback, marked as only they would see it."""
        self.show(f"── only @{member.name} sees this ──\n{render_text(feedback)}")
        return True

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        """Print the running count of a private-mode question (a terminal cannot edit a post)."""
        self.show(
            f"── #{channel_id}, today's question ──\n{answer_count_line(card.answer_count or 0)}"
        )

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Print a line only one member would see."""
        self.show(f"── only @{member.name} sees this ──\n{text}")
        return True

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return None: a terminal keeps no history to look in; printing again does no harm."""
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
        """Return None, as for a question."""
        return None

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        """Print the weekly digest in #channel; save its picture next to the database."""
        lines = digest_lines(card)
        if picture is not None and self.pictures is not None:
            self.pictures.mkdir(parents=True, exist_ok=True)
            path = self.pictures / card.picture_name
            path.write_bytes(picture)
            lines.append(f"Picture: {path}")
        self.show(f"── #{channel_id} ──\n" + "\n".join(lines))
        return self.new_message_id()

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return None, as for a question."""
        return None
