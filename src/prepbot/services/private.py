"""Private answers: the running count on a private-mode question and the public-reply reminder.

In a study group whose answers are private, the question shows how many have answered so far
("🔒 5 answers so far"), edited in place at most once every ``pace`` seconds per round however
fast answers come, and never who or what. A member who replies in the thread instead is told,
privately and once per round, that their reply is public (it still counts). Both run in the
background: an answer is stored and acknowledged without waiting for them, and a platform
fault here is logged and shown at the next change, never raised. Imports no chat platform
library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from prepbot.core.commands import AnswerMode
from prepbot.core.events import ReplyEdited, ThreadReply
from prepbot.core.views import QuestionCard
from prepbot.services.base import ServiceContext
from prepbot.store.models import Answer, Community, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)

COUNT_PACE = 3.0  # seconds between two edits of one round's count (Discord: 5 edits per 5 s)
REMINDED_KEPT = 10_000  # (round, member) pairs remembered as reminded, at most
PUBLIC_REPLY_REMINDER = (
    "🔓 Heads up: this study group answers privately until the reveal, and your reply in the "
    "thread is public, so others can read it before they write theirs. It counts all the "
    "same. Next time, press *Answer* on the question (or use `/prep answer <text>`) to keep "
    "it hidden until the reveal."
)


class PrivateAnswers:
    """Keep private-mode questions' counts current and remind members who reply in public."""

    def __init__(
        self, ctx: ServiceContext, card_of: Callable[[Round, Subscription], QuestionCard | None]
    ) -> None:
        self.ctx = ctx
        self.pace = COUNT_PACE
        self._card_of = card_of  # the question card as posted (the round service builds it)
        self._dirty: set[int] = set()
        self._counting: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reminded: dict[tuple[int, str], None] = {}

    def counted(self, round_ids: set[int]) -> None:
        """Note that these rounds' answers came or went; their counts follow within ``pace``."""
        for round_id in round_ids:
            self._dirty.add(round_id)
            task = self._counting.get(round_id)
            if task is None or task.done():
                self._counting[round_id] = self._spawn(self._keep_count(round_id))

    def replied_in_public(self, reply: ThreadReply | ReplyEdited, round_id: int) -> None:
        """Remind a member, once per round, that their thread reply in a private group is public."""
        key = (round_id, reply.member.id)
        if key in self._reminded:
            return
        self._reminded[key] = None
        while len(self._reminded) > REMINDED_KEPT:
            self._reminded.pop(next(iter(self._reminded)))
        self._spawn(self._remind(reply))

    async def close(self) -> None:
        """Stop the counts and reminders still waiting (a count catches up at the next change)."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task

    async def drain(self, timeout: float = 10) -> None:
        """Wait (at most ``timeout`` seconds) for the counts and reminders under way."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _keep_count(self, round_id: int) -> None:
        """Show a round's count now, then again after each ``pace`` while answers keep coming."""
        while round_id in self._dirty:
            self._dirty.discard(round_id)
            try:
                await self.show_count(round_id)
            except Exception as error:  # the next answer tries again
                log.warning("could not show round %s's answer count: %r", round_id, error)
            await asyncio.sleep(self.pace)

    async def mode_changed(self, subscription_id: int) -> None:
        """Bring a group's open question in line with a new answer mode (button, count, line)."""
        async with self.ctx.db.transaction() as session:
            ids = set(
                (
                    await session.scalars(
                        select(Round.id).where(
                            Round.subscription_id == subscription_id,
                            Round.status == RoundStatus.POSTED,
                        )
                    )
                ).all()
            )
        self.counted(ids)

    async def show_count(self, round_id: int) -> int | None:
        """Edit an open round's question to match its group's mode and count; return the count.

        In a private group the question carries the Answer button and the running count; in a
        thread group (after an admin switched back) neither. None when nothing was edited.
        """
        async with self.ctx.db.transaction() as session:
            row = (
                await session.execute(
                    select(Round, Subscription, Community.platform, Community.external_id)
                    .join(Subscription, Subscription.id == Round.subscription_id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(Round.id == round_id)
                )
            ).first()
            if row is None:
                return None
            round_, subscription, platform_name, community_id = row
            if round_.status != RoundStatus.POSTED or round_.question_message_id is None:
                return None
            count = None
            if subscription.answer_mode == AnswerMode.PRIVATE:
                count = await session.scalar(
                    select(func.count())
                    .select_from(Answer)
                    .where(Answer.round_id == round_id, Answer.on_time.is_(True))
                )
        card = self._card_of(round_, subscription)
        if card is None:
            return None
        card = replace(card, answer_count=None if count is None else int(count))
        await self.ctx.platform(platform_name).show_answer_count(
            subscription.channel_id, round_.question_message_id, card, community_id=community_id
        )
        return card.answer_count

    async def _remind(self, reply: ThreadReply | ReplyEdited) -> None:
        place = reply.place
        try:
            await self.ctx.platform(place.platform).send_notice(
                place.channel_id,
                reply.thread_id,
                reply.member,
                PUBLIC_REPLY_REMINDER,
                community_id=place.community_id,
            )
        except Exception as error:  # the answer is stored; only the reminder is missing
            log.warning("could not remind %s that their reply is public: %r", reply.member, error)
