"""Rounds: claim and post the question of the day, and reveal it exactly once.

A round is claimed in the database (unique per subscription and local date) before it is
posted, and a reveal is claimed by moving the round from posted to revealed in one UPDATE, so
a second caller (a retry, a replica) does nothing. Streaks and totals change in the reveal's
transaction. Imports no chat platform library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.content.model import Scenario
from prepbot.core.rotation import next_pick
from prepbot.core.streaks import milestone_reached
from prepbot.core.views import MemberRef, Milestone, QuestionCard, RevealCard
from prepbot.services.base import ServiceContext, member_ref, open_rounds, schedule_of
from prepbot.services.ports import ChannelUnavailable
from prepbot.store.models import Answer, Member, MemberStats, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)


class NoEligibleScenario(Exception):
    """No scenario in the bank matches a subscription's filters."""


@dataclass(frozen=True)
class PostOutcome:
    """What posting a round did."""

    round: Round
    posted_now: bool


class RoundService:
    """Post and reveal rounds."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def eligible(self, subscription: Subscription) -> list[Scenario]:
        """Return the scenarios a subscription's filters allow, ordered by id."""
        topics, difficulties = set(subscription.topics), set(subscription.difficulties)
        return [
            s
            for s in self.ctx.catalog.scenarios
            if (not topics or topics & set(s.topics))
            and (not difficulties or s.difficulty.value in difficulties)
        ]

    async def post_round(self, subscription_id: int, local_date: date) -> PostOutcome | None:
        """Post the round of ``local_date`` unless it exists; None if the group does not post."""
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            subscription = await session.get(Subscription, subscription_id)
            if subscription is None or not subscription.active or subscription.paused:
                return None
            existing = await self._round_on(session, subscription_id, local_date)
            if existing is not None:
                return PostOutcome(round=existing, posted_now=False)
            pick = await self._pick(session, subscription)
            schedule = schedule_of(subscription)
            now = ctx.clock.now()
            reveal_due = schedule.reveal_due(local_date, now)
            claimed = await session.scalar(
                ctx.insert_ignore(Round)
                .values(
                    subscription_id=subscription_id,
                    local_date=local_date,
                    scenario_id=pick[0],
                    cycle=pick[1],
                    status=RoundStatus.CLAIMED,
                    claimed_at=now,
                    reveal_due_at=reveal_due,
                )
                .on_conflict_do_nothing()
                .returning(Round.id)
            )
            if claimed is None:
                existing = await self._round_on(session, subscription_id, local_date)
                assert existing is not None
                return PostOutcome(round=existing, posted_now=False)
            round_ = await session.get(Round, claimed)
            assert round_ is not None
            place = await self._platform_of(session, subscription)
        posted = await self._publish(round_, subscription, place)  # what it needs is loaded
        return PostOutcome(round=posted, posted_now=True) if posted is not None else None

    async def publish(self, round_id: int) -> Round | None:
        """Post a claimed round's question and mark it posted; also repairs orphaned claims.

        None when the channel is unavailable (the round is dropped, the group paused).
        """
        async with self.ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is None or round_.status != RoundStatus.CLAIMED:
                return round_
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            place = await self._platform_of(session, subscription)
        return await self._publish(round_, subscription, place)

    async def _publish(
        self, round_: Round, subscription: Subscription, place: tuple[str, str]
    ) -> Round | None:
        """Post a claimed round's question, then mark it posted in one statement."""
        ctx = self.ctx
        round_id = round_.id
        platform_name, community_id = place
        scenario = ctx.catalog.get(round_.scenario_id)
        if scenario is None:
            await self._give_up(round_id, subscription.id, None)
            return None
        card = QuestionCard.of(
            scenario,
            ctx.catalog.topics,
            round_date=round_.local_date,
            reveal_at=round_.reveal_due_at,
            timezone=subscription.timezone,
        )
        try:
            message_id = await ctx.platform(platform_name).post_question(
                subscription.channel_id, card, community_id=community_id
            )
        except ChannelUnavailable as error:
            ctx.metrics.platform_errors.labels(platform_name, "channel_unavailable").inc()
            await self._give_up(round_id, subscription.id, error.reason)
            return None
        async with ctx.db.transaction() as session:
            stored = await session.scalar(
                update(Round)
                .where(Round.id == round_id)
                .values(
                    status=RoundStatus.POSTED,
                    question_message_id=message_id,
                    posted_at=ctx.clock.now(),
                )
                .returning(Round)
                .execution_options(synchronize_session=False)
            )
            assert stored is not None
        ctx.metrics.rounds_posted.labels(platform_name).inc()
        log.info(
            "posted round %s (%s) to subscription %s", round_id, round_.scenario_id, subscription.id
        )
        return stored

    async def reveal_round(self, round_id: int) -> RevealCard | None:
        """Reveal one posted round; None if it was already revealed (or is not posted yet)."""
        ctx = self.ctx
        now = ctx.clock.now()
        async with ctx.db.deciding() as session:  # answers being stored finish first
            claimed = await session.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == RoundStatus.POSTED)
                .values(status=RoundStatus.REVEALED, revealed_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            round_ = await session.get(Round, round_id)
            assert round_ is not None
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            milestones = await self._update_stats(session, round_)
        return await self._post_reveal(round_id, milestones)

    async def republish_reveal(self, round_id: int) -> RevealCard | None:
        """Post the reveal of a round revealed in the database but never posted (a crash)."""
        async with self.ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is None or round_.status != RoundStatus.REVEALED:
                return None
            if round_.reveal_message_id is not None:
                return None
        return await self._post_reveal(round_id, ())

    async def _post_reveal(self, round_id: int, milestones: tuple[Milestone, ...]) -> RevealCard:
        """Post a revealed round's reveal card in its thread and remember its message id."""
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            assert round_ is not None
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            answers = (
                await session.execute(
                    select(Answer, Member)
                    .join(Member, Member.id == Answer.member_id)
                    .where(Answer.round_id == round_id)
                    .order_by(Answer.first_reply_at, Answer.id)
                )
            ).all()
            platform_name, community_id = await self._platform_of(session, subscription)
        on_time = tuple(member_ref(m) for a, m in answers if a.on_time)
        late = tuple(member_ref(m) for a, m in answers if not a.on_time)
        card = self._reveal_card(round_.scenario_id, on_time, late, milestones)
        thread_id = round_.question_message_id
        assert thread_id is not None
        try:
            message_id = await ctx.platform(platform_name).post_reveal(
                subscription.channel_id, thread_id, card, community_id=community_id
            )
        except ChannelUnavailable as error:
            ctx.metrics.platform_errors.labels(platform_name, "channel_unavailable").inc()
            await self._pause(round_.subscription_id, error.reason)
            return card
        async with ctx.db.transaction() as session:
            stored = await session.get(Round, round_id)
            assert stored is not None
            stored.reveal_message_id = message_id
        ctx.metrics.rounds_revealed.labels(platform_name).inc()
        log.info("revealed round %s of subscription %s", round_id, round_.subscription_id)
        return card

    async def reveal_open(self, subscription_id: int) -> list[RevealCard]:
        """Reveal every open round of a subscription, oldest first (streaks go in order)."""
        async with self.ctx.db.transaction() as session:
            ids = list((await session.scalars(open_rounds(subscription_id))).all())
        cards = []
        for round_ in ids:
            card = await self.reveal_round(round_.id)
            if card is not None:
                cards.append(card)
        return cards

    def _reveal_card(
        self,
        scenario_id: str,
        on_time: tuple[MemberRef, ...],
        late: tuple[MemberRef, ...],
        milestones: tuple[Milestone, ...],
    ) -> RevealCard:
        scenario = self.ctx.catalog.get(scenario_id)
        if scenario is None:
            return RevealCard(
                scenario_id=scenario_id,
                title=scenario_id,
                insights=("This scenario has been removed from the question bank.",),
                trap_answer=None,
                trap_why=None,
                follow_ups=(),
                source_author="unknown",
                source_handle=None,
                source_url="",
                on_time=on_time,
                late=late,
                milestones=milestones,
                is_round=True,
            )
        return RevealCard.of(
            scenario,
            on_time=on_time,
            late=late,
            milestones=milestones,
            is_round=True,
        )

    async def _update_stats(self, session: AsyncSession, round_: Round) -> tuple[Milestone, ...]:
        """Apply one revealed round to the group's streaks and totals in set-based SQL.

        No statement carries one parameter per member, so a round with any number of answers
        stays within the databases' parameter limits (asyncpg allows 32,767).
        """
        subscription_id = round_.subscription_id
        on_time = (
            select(Answer.member_id)
            .where(Answer.round_id == round_.id, Answer.on_time.is_(True))
            .scalar_subquery()
        )
        await session.execute(
            self.ctx.insert_ignore(MemberStats)
            .from_select(
                ["subscription_id", "member_id", "on_time", "current_streak", "best_streak"],
                select(
                    literal(subscription_id),
                    Answer.member_id,
                    literal(0),
                    literal(0),
                    literal(0),
                ).where(Answer.round_id == round_.id, Answer.on_time.is_(True)),
            )
            .on_conflict_do_nothing()
        )
        before = (
            await session.execute(
                select(MemberStats.member_id, MemberStats.current_streak).where(
                    MemberStats.subscription_id == subscription_id,
                    MemberStats.member_id.in_(on_time),
                )
            )
        ).all()
        answered = MemberStats.member_id.in_(on_time)
        await session.execute(
            update(MemberStats)
            .where(MemberStats.subscription_id == subscription_id)
            .values(
                current_streak=case((answered, MemberStats.current_streak + 1), else_=0),
                best_streak=case(
                    (
                        answered & (MemberStats.current_streak + 1 > MemberStats.best_streak),
                        MemberStats.current_streak + 1,
                    ),
                    else_=MemberStats.best_streak,
                ),
                on_time=case((answered, MemberStats.on_time + 1), else_=MemberStats.on_time),
            )
            .execution_options(synchronize_session=False)
        )
        reached = {
            member_id: milestone
            for member_id, streak in before
            if (milestone := milestone_reached(streak, streak + 1)) is not None
        }
        members: list[Member] = []
        ids = list(reached)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            members += (await session.scalars(select(Member).where(Member.id.in_(chunk)))).all()
        return tuple(
            Milestone(member=member_ref(m), streak=reached[m.id])
            for m in sorted(members, key=lambda m: m.display_name.lower())
        )

    async def _pick(self, session: AsyncSession, subscription: Subscription) -> tuple[str, int]:
        eligible = [s.id for s in self.eligible(subscription)]
        last_cycle = await session.scalar(
            select(func.max(Round.cycle)).where(Round.subscription_id == subscription.id)
        )
        cycle = last_cycle or 0
        used = set(
            (
                await session.scalars(
                    select(Round.scenario_id).where(
                        Round.subscription_id == subscription.id, Round.cycle == cycle
                    )
                )
            ).all()
        )
        pick = next_pick(subscription.seed, eligible, cycle, used)
        if pick is None:
            raise NoEligibleScenario(
                "no scenario in the question bank matches this study group's topics and "
                "difficulty; widen them with /prep schedule"
            )
        return pick.scenario_id, pick.cycle

    @staticmethod
    async def _round_on(session: AsyncSession, subscription_id: int, day: date) -> Round | None:
        return await session.scalar(
            select(Round).where(Round.subscription_id == subscription_id, Round.local_date == day)
        )

    @staticmethod
    async def _platform_of(session: AsyncSession, subscription: Subscription) -> tuple[str, str]:
        """Return the platform and the community id (Slack team, Discord server) of a group."""
        from prepbot.store.models import Community

        community = await session.get(Community, subscription.community_id)
        assert community is not None
        return community.platform, community.external_id

    async def _give_up(self, round_id: int, subscription_id: int, reason: str | None) -> None:
        """Drop a claimed round that could not be posted; pause the group if a reason is given."""
        async with self.ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is not None and round_.status == RoundStatus.CLAIMED:
                await session.delete(round_)
        if reason is not None:
            await self._pause(subscription_id, reason)

    async def _pause(self, subscription_id: int, reason: str) -> None:
        async with self.ctx.db.transaction() as session:
            subscription = await session.get(Subscription, subscription_id)
            if subscription is not None:
                subscription.paused = True
                subscription.paused_reason = reason
        log.warning("paused subscription %s: %s", subscription_id, reason)
