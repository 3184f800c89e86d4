"""The services' port to chat platforms: the ChatPlatform protocol and its errors.

The services call platforms only through this protocol; adapters under ``platforms/``
implement it, so dependencies point inward. Imports no concrete platform library and nothing
from ``prepbot.platforms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import datetime
from typing import Any, Protocol

from prepbot.content.model import Rubric
from prepbot.core.grading import Grade
from prepbot.core.views import DigestCard, FeedbackView, MemberRef, QuestionCard, RevealCard


class ChannelUnavailable(Exception):
    """The channel is gone, archived or no longer lets the bot post; its subscription pauses."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatPlatform(Protocol):
    """A chat platform the bot posts rounds to.

    ``community_id`` names the community (Slack workspace, Discord server) the channel belongs
    to, as stored with its subscription; a platform whose limits are per community paces by it,
    others ignore it. None when the caller does not know it.
    """

    name: str

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        """Post the question of the day in a channel; return the message id its thread hangs on."""
        ...

    async def post_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post the reveal in a round's thread; return the reveal's message id."""
        ...

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Send a member their private feedback on a round; False if the platform won't deliver.

        Slack shows it only to them in the round's thread; Discord sends a direct message
        (False when their DMs are closed); the console prints it.
        """
        ...

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        """Edit a round's question in place to match ``card``: its answer mode and count.

        In a private group ``card.answer_count`` is the running count (never who) and the
        post carries the Answer button; after an admin switched the group back to thread
        answers, the card has neither. ``thread_id`` is the id ``post_question`` returned.
        Called at most every few seconds per round.
        """
        ...

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Tell one member something privately, near the round's thread; False if undeliverable.

        Slack shows it only to them (ephemeral, in the thread); Discord sends a direct
        message; the console prints it.
        """
        ...

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the thread id of the bot's own post of this round since ``since``, if any.

        A repair asks before posting again: the process that posted may have died after the
        platform made the message, or the platform may have made it after answering too late.
        """
        ...

    async def find_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the message id of the bot's own reveal in a round's thread, if it is there."""
        ...

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post a study group's weekly digest in its channel; return the message's id.

        ``picture`` is a PNG named ``card.picture_name`` (None: text only). Slack uploads it
        with files_upload_v2, the digest's text as its comment; Discord attaches it. When the
        upload is refused (no ``files:write`` scope, a file error) the text goes alone.
        """
        ...

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the message id of the bot's own post of this digest since ``since``, if any."""
        ...


class InFlight:
    """The platform events being handled right now, so a shutdown can wait for them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        """Count the current task as in flight while the block runs."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run follow-up work (a reaction) in the background, counted as in flight till done."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 10) -> None:
        """Wait (at most ``timeout`` seconds) for every event in flight to finish."""
        current = asyncio.current_task()
        pending = {t for t in self._tasks if t is not current}
        if pending:
            await asyncio.wait(pending, timeout=timeout)


class AnswerGrader(Protocol):
    """What grades a round's answers at its reveal: the rubric grader, or an LLM in front of it.

    Must return one grade per answer, in order, within ``deadline_seconds`` (an implementation
    that calls out falls back to the rubric grader for answers it has no result for in time);
    must never raise for a platform or network fault.
    """

    async def grade_answers(
        self, rubric: Rubric, prompt: str, answers: Sequence[str], *, deadline_seconds: float
    ) -> list[Grade]:
        """Grade each answer to ``prompt`` against ``rubric``."""
        ...
