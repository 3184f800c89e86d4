"""Answers: record, edit and withdraw members' replies in a round's thread.

Every write is keyed by the platform's message id, so a replayed event changes nothing, and it
is committed before the call returns, so a platform may acknowledge the event only after the
answer is stored. A reply before the reveal is on time; after it, late. Imports no chat
platform library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.core.events import Place, ReplyDeleted, ReplyEdited, ThreadReply
from prepbot.services.base import ServiceContext, member_for, subscription_at
from prepbot.store.models import Answer, DeletedReply, Reply, Round, RoundStatus


class AnswerStatus(StrEnum):
    """What happened to a reply."""

    RECORDED = "recorded"
    LATE = "late"
    DUPLICATE = "duplicate"
    EDITED = "edited"
    WITHDRAWN = "withdrawn"
    REMOVED = "removed"
    IGNORED = "ignored"


@dataclass(frozen=True)
class AnswerOutcome:
    """The result of handling one reply event."""

    status: AnswerStatus
    round_id: int | None = None


IGNORED = AnswerOutcome(AnswerStatus.IGNORED)


class AnswerService:
    """Turn thread events into stored answers."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def record(self, reply: ThreadReply | ReplyEdited) -> AnswerOutcome:
        """Store a reply as (part of) the member's answer; replays change nothing."""
        return self._counted(await self._record(reply))

    async def edit(self, edit: ReplyEdited) -> AnswerOutcome:
        """Update the answer a reply belongs to; an edit of an unseen reply records it."""
        return self._counted(await self._edit(edit))

    async def withdraw(self, deleted: ReplyDeleted) -> AnswerOutcome:
        """Remove a deleted reply; with none left the answer is withdrawn (or a late one removed).

        An on-time answer of a round already revealed stays: its streak credit is history.
        """
        return self._counted(await self._withdraw(deleted))

    def _counted(self, outcome: AnswerOutcome) -> AnswerOutcome:
        self.ctx.metrics.answers.labels(outcome.status.value).inc()
        return outcome

    async def _record(self, reply: ThreadReply | ReplyEdited) -> AnswerOutcome:
        if reply.is_bot or not reply.text.strip():
            return IGNORED
        async with self.ctx.db.transaction() as session:
            found = await self._round_and_community(session, reply.place, reply.thread_id)
            if found is None:
                return IGNORED
            round_, community_id = found
            if await session.get(DeletedReply, (round_.id, reply.message_id)) is not None:
                return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id)  # replayed after deletion
            member = await member_for(self.ctx, session, community_id, reply.member)
            on_time = round_.status == RoundStatus.POSTED
            await session.execute(
                self.ctx.insert_ignore(Answer)
                .values(
                    round_id=round_.id,
                    member_id=member.id,
                    on_time=on_time,
                    text="",
                    first_reply_at=reply.at,
                    updated_at=reply.at,
                )
                .on_conflict_do_nothing()
            )
            answer = await session.scalar(
                select(Answer).where(Answer.round_id == round_.id, Answer.member_id == member.id)
            )
            assert answer is not None
            inserted = await session.scalar(
                self.ctx.insert_ignore(Reply)
                .values(
                    round_id=round_.id,
                    answer_id=answer.id,
                    message_id=reply.message_id,
                    text=reply.text.strip(),
                    posted_at=reply.at,
                    edited_at=reply.at if isinstance(reply, ReplyEdited) else None,
                )
                .on_conflict_do_nothing()
                .returning(Reply.id)
            )
            if inserted is None:
                return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id)
            await self._join_replies(session, answer, reply)
            status = AnswerStatus.RECORDED if answer.on_time else AnswerStatus.LATE
            return AnswerOutcome(status, round_.id)

    async def _edit(self, edit: ReplyEdited) -> AnswerOutcome:
        if edit.is_bot:
            return IGNORED
        async with self.ctx.db.transaction() as session:
            round_ = await self._round_of(session, edit.place, edit.thread_id)
            if round_ is None:
                return IGNORED
            stored = await self._reply(session, round_, edit.message_id)
            if stored is not None:
                answer = await session.get(Answer, stored.answer_id)
                assert answer is not None
                if not edit.text.strip():
                    return AnswerOutcome(AnswerStatus.IGNORED, round_.id)
                latest = stored.edited_at or stored.posted_at
                if edit.at <= latest and stored.edited_at is not None:
                    return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id)  # older or replayed
                stored.text = edit.text.strip()
                stored.edited_at = edit.at
                await self._join_replies(session, answer, edit)
                return AnswerOutcome(AnswerStatus.EDITED, round_.id)
        return await self._record(edit)

    async def _withdraw(self, deleted: ReplyDeleted) -> AnswerOutcome:
        async with self.ctx.db.transaction() as session:
            round_ = await self._round_of(session, deleted.place, deleted.thread_id)
            if round_ is None:
                return IGNORED
            await session.execute(
                self.ctx.insert_ignore(DeletedReply)
                .values(round_id=round_.id, message_id=deleted.message_id, deleted_at=deleted.at)
                .on_conflict_do_nothing()
            )
            stored = await self._reply(session, round_, deleted.message_id)
            if stored is None:
                return AnswerOutcome(AnswerStatus.IGNORED, round_.id)
            answer = await session.get(Answer, stored.answer_id)
            assert answer is not None
            await session.delete(stored)
            await session.flush()
            remaining = await session.scalar(
                select(func.count()).select_from(Reply).where(Reply.answer_id == answer.id)
            )
            if remaining:
                await self._join_replies(session, answer, deleted)
                return AnswerOutcome(AnswerStatus.EDITED, round_.id)
            if round_.status == RoundStatus.REVEALED and answer.on_time:
                answer.updated_at = deleted.at
                return AnswerOutcome(AnswerStatus.EDITED, round_.id)
            await session.execute(delete(Answer).where(Answer.id == answer.id))
            status = AnswerStatus.WITHDRAWN if answer.on_time else AnswerStatus.REMOVED
            return AnswerOutcome(status, round_.id)

    async def _round_of(self, session: AsyncSession, place: Place, thread_id: str) -> Round | None:
        """Return the posted or revealed round whose question message is ``thread_id``."""
        found = await self._round_and_community(session, place, thread_id)
        return found[0] if found is not None else None

    async def _round_and_community(
        self, session: AsyncSession, place: Place, thread_id: str
    ) -> tuple[Round, int] | None:
        """Return that round and the id of its community."""
        subscription = await session.scalar(subscription_at(place))
        if subscription is None:
            return None
        query = select(Round).where(
            Round.subscription_id == subscription.id,
            Round.question_message_id == thread_id,
            Round.status.in_([RoundStatus.POSTED, RoundStatus.REVEALED]),
        )
        if self.ctx.db.dialect == "postgresql":
            query = query.with_for_update(read=True)  # a reveal waits for answers in flight
        round_ = await session.scalar(query)
        return (round_, subscription.community_id) if round_ is not None else None

    @staticmethod
    async def _reply(session: AsyncSession, round_: Round, message_id: str) -> Reply | None:
        """Return the stored reply of a platform message in a round's thread."""
        return await session.scalar(
            select(Reply).where(Reply.round_id == round_.id, Reply.message_id == message_id)
        )

    @staticmethod
    async def _join_replies(
        session: AsyncSession, answer: Answer, event: ThreadReply | ReplyEdited | ReplyDeleted
    ) -> None:
        """Make an answer's text the member's replies in the order they were posted."""
        await session.flush()
        texts = (
            await session.scalars(
                select(Reply.text)
                .where(Reply.answer_id == answer.id)
                .order_by(Reply.posted_at, Reply.id)
            )
        ).all()
        answer.text = "\n\n".join(texts)
        answer.updated_at = max(answer.updated_at, event.at)
