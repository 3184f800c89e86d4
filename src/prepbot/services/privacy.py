"""A member's right to be forgotten, and how long answer text is kept.

``forget`` erases a member from one community: their answers, the messages those were made
of, grades, feedback state, streaks and preferences, replies still held, and their name and
id in the audit log; leaderboards and streaks are read from what remains, so they are
recomputed by construction. The platform message ids of erased replies are kept as withdrawn
(no member id or text), so a replayed event of an old reply cannot bring it back.
``drop_old_answer_text`` empties the text of answers to rounds revealed more than the retention
period ago, keeping who answered, on time or late, and the points: the counts stay. Imports no
chat platform library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.core.events import Place
from prepbot.services.base import ServiceContext
from prepbot.store.models import (
    Answer,
    AuditEntry,
    Community,
    DeletedReply,
    HeldReply,
    Member,
    MemberStats,
    MemberTally,
    Reply,
    Round,
    RoundStatus,
    Subscription,
)

log = logging.getLogger(__name__)
FORGOTTEN = "forgotten"  # what the audit log says instead of a forgotten member's id and name


@dataclass(frozen=True)
class ForgetReport:
    """What erasing a member removed (or, before confirming, would remove)."""

    found: bool
    answers: int = 0
    groups: int = 0


class PrivacyService:
    """Erase members on request; drop answer text past the retention period."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def what_we_hold(self, place: Place, member_id: str) -> ForgetReport:
        """Say how many answers and study groups a member has in a place's community."""
        async with self.ctx.db.transaction() as session:
            member = await self._member(session, place, member_id)
            if member is None:
                return ForgetReport(found=False)
            return await self._held(session, member)

    @staticmethod
    async def _held(session: AsyncSession, member: Member) -> ForgetReport:
        """Count a member's answers and the study groups they were given in."""
        answers = await session.scalar(
            select(func.count()).select_from(Answer).where(Answer.member_id == member.id)
        )
        groups = await session.scalar(
            select(func.count(func.distinct(Round.subscription_id)))
            .join(Answer, Answer.round_id == Round.id)
            .where(Answer.member_id == member.id)
        )
        return ForgetReport(found=True, answers=int(answers or 0), groups=int(groups or 0))

    async def forget(self, place: Place, member_id: str) -> ForgetReport:
        """Erase a member from a place's community in one transaction; say what went."""
        async with self.ctx.db.deciding() as session:  # a reveal in progress finishes first
            member = await self._member(session, place, member_id)
            held = delete(HeldReply).where(
                HeldReply.member_external_id == member_id,
                HeldReply.subscription_id.in_(
                    select(Subscription.id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Community.platform == place.platform,
                        Community.external_id == place.community_id,
                    )
                ),
            )
            await session.execute(held)
            await session.execute(
                update(AuditEntry)
                .where(
                    AuditEntry.platform == place.platform,
                    AuditEntry.community_id == place.community_id,
                    AuditEntry.member_id == member_id,
                )
                .values(member_id=FORGOTTEN, member_name=FORGOTTEN)
            )
            if member is None:
                return ForgetReport(found=False)
            replies = (
                await session.execute(
                    select(Reply.round_id, Reply.message_id)
                    .join(Answer, Answer.id == Reply.answer_id)
                    .where(Answer.member_id == member.id)
                )
            ).all()
            if replies:  # withdrawn for good: a replayed event of one must not restore it
                await session.execute(
                    self.ctx.insert_ignore(DeletedReply).on_conflict_do_nothing(),
                    [
                        {"round_id": r, "message_id": m, "deleted_at": self.ctx.clock.now()}
                        for r, m in replies
                    ],
                )
            report = await self._held(session, member)
            # Answers, their replies and grades, streaks and preferences go with the member.
            await session.execute(delete(MemberStats).where(MemberStats.member_id == member.id))
            await session.execute(delete(MemberTally).where(MemberTally.member_id == member.id))
            await session.execute(delete(Answer).where(Answer.member_id == member.id))
            await session.execute(delete(Member).where(Member.id == member.id))
        log.info("erased a member's data on request (%s answers)", report.answers)
        return report

    async def drop_old_answer_text(self, keep: timedelta, now: datetime) -> int:
        """Empty the text of answers to rounds revealed before ``now - keep``; return how many."""
        old_rounds = select(Round.id).where(
            Round.status == RoundStatus.REVEALED, Round.revealed_at < now - keep
        )
        async with self.ctx.db.transaction() as session:
            await session.execute(
                update(Reply)
                .where(Reply.round_id.in_(old_rounds), Reply.text != "")
                .values(text="")
                .execution_options(synchronize_session=False)
            )
            emptied = await session.execute(
                update(Answer)
                .where(Answer.round_id.in_(old_rounds), Answer.text != "")
                .values(text="")
                .execution_options(synchronize_session=False)
            )
        count = int(emptied.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            log.info("emptied the text of %s answers past the retention period", count)
        return count

    @staticmethod
    async def _member(session: AsyncSession, place: Place, member_id: str) -> Member | None:
        return await session.scalar(
            select(Member)
            .join(Community, Community.id == Member.community_id)
            .where(
                Community.platform == place.platform,
                Community.external_id == place.community_id,
                Member.external_id == member_id,
            )
        )
