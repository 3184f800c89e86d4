"""Rounds: claim and post the question of the day, and reveal it exactly once.

A round is claimed in the database (unique per subscription and local date) before it is
posted, and a reveal is claimed by moving the round from posted to revealed in one UPDATE, so
a second caller (a retry, a replica) does nothing. While the question or the reveal is in
flight the round names its owner (this process) and a lease the owner keeps renewing, however
slow the platform is; only a round whose lease ran out (its owner died or lost the database)
is repaired, and a repair first asks the platform for the bot's own message before posting
again. Publishing is guarded by the round's status, and every thread the bot posted for a
round is remembered, so a reply in any of them counts. Streaks and totals change in the
reveal's transaction. Imports no chat platform library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, timedelta

from sqlalchemy import case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.content.model import Scenario
from prepbot.core.commands import AnswerMode
from prepbot.core.rotation import FEW_LEFT, RECENT, Candidate, Pick, matching, next_pick
from prepbot.core.streaks import milestone_reached
from prepbot.core.views import MemberRef, Milestone, QuestionCard, RevealCard, SharedAnswer
from prepbot.services import tallies
from prepbot.services.base import Leases, ServiceContext, member_ref, open_rounds, schedule_of
from prepbot.services.feedback import FeedbackService, RoundCoverage
from prepbot.services.ports import ChannelUnavailable
from prepbot.store.models import (
    PRIVATE_REPLY,
    Answer,
    HeldReply,
    Member,
    MemberStats,
    Reply,
    Round,
    RoundStatus,
    RoundThread,
    Subscription,
)

log = logging.getLogger(__name__)


LOOK_BACK = timedelta(minutes=5)  # how long before a claim the bot's own message may be dated


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
        self.feedback = FeedbackService(ctx)
        self._leases = Leases(ctx, Round, "round")  # rounds this process posts or reveals now
        self._owning = self._leases.owning

    def in_flight(self) -> frozenset[int]:
        """Return the rounds this process is posting or revealing right now."""
        return frozenset(self._leases.in_flight)

    async def take_over(self, round_id: int) -> bool:
        """Become the owner of an abandoned round (its lease ran out); False if it is not that."""
        ctx = self.ctx
        if round_id in self._leases.in_flight:
            return False
        now = ctx.lease_clock.now()
        async with ctx.db.transaction() as session:
            taken = await session.execute(
                update(Round)
                .where(
                    Round.id == round_id,
                    or_(
                        Round.status == RoundStatus.CLAIMED,
                        (Round.status == RoundStatus.REVEALED) & Round.reveal_message_id.is_(None),
                    ),
                    or_(Round.lease_until.is_(None), Round.lease_until < now),
                )
                .values(claimed_by=ctx.owner, lease_until=now + ctx.lease)
                .execution_options(synchronize_session=False)
            )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    def eligible(self, subscription: Subscription) -> list[Scenario]:
        """Return the scenarios a subscription's filters allow, in the bank's order."""
        return matching(self.ctx.catalog.scenarios, subscription.topics, subscription.difficulties)

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
                    scenario_id=pick.scenario_id,
                    cycle=pick.cycle,
                    rotation_left=await self._rotation_warning(session, subscription.id, pick),
                    status=RoundStatus.CLAIMED,
                    claimed_at=now,
                    reveal_due_at=reveal_due,
                    claimed_by=ctx.owner,
                    lease_until=ctx.lease_clock.now() + ctx.lease,
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
        async with self._owning(round_.id):
            posted = await self._publish(round_, subscription, place, look_first=False)
        return PostOutcome(round=posted, posted_now=True) if posted is not None else None

    async def publish(self, round_id: int) -> Round | None:
        """Repair a claimed round whose owner is gone: find the bot's post, else post it.

        The caller took the round over (``take_over``). None when the channel is unavailable
        (the round is dropped, the group paused).
        """
        async with self.ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is None or round_.status != RoundStatus.CLAIMED:
                return round_
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            place = await self._platform_of(session, subscription)
        async with self._owning(round_id):
            return await self._publish(round_, subscription, place, look_first=True)

    async def _publish(
        self,
        round_: Round,
        subscription: Subscription,
        place: tuple[str, str],
        *,
        look_first: bool,
    ) -> Round | None:
        """Post a claimed round's question (unless the bot's post is found), then mark it posted.

        Marking it posted is guarded by its status: if another owner finished first, this
        message is remembered as one more thread of the round, never replaces the first.
        """
        ctx = self.ctx
        round_id = round_.id
        platform_name, community_id = place
        scenario = ctx.catalog.get(round_.scenario_id)
        if scenario is None:
            await self._give_up(round_id, subscription.id, None)
            return None
        card = self.question_card(round_, subscription)
        assert card is not None
        platform = ctx.platform(platform_name)
        try:
            message_id = None
            if look_first:
                message_id = await platform.find_question(
                    subscription.channel_id,
                    card,
                    community_id=community_id,
                    since=round_.claimed_at - LOOK_BACK,
                )
                if message_id is not None:
                    log.warning(
                        "round %s was already posted (message %s); keeping that post",
                        round_id,
                        message_id,
                    )
            if message_id is None:
                message_id = await platform.post_question(
                    subscription.channel_id, card, community_id=community_id
                )
        except ChannelUnavailable as error:
            ctx.metrics.platform_errors.labels(platform_name, "channel_unavailable").inc()
            await self._give_up(round_id, subscription.id, error.reason)
            return None
        now = ctx.clock.now()
        async with ctx.db.transaction() as session:
            await session.execute(
                ctx.insert_ignore(RoundThread)
                .values(subscription_id=subscription.id, message_id=message_id, round_id=round_id)
                .on_conflict_do_nothing()
            )
            stored = await session.scalar(
                update(Round)
                .where(Round.id == round_id, Round.status == RoundStatus.CLAIMED)
                .values(
                    status=RoundStatus.POSTED,
                    question_message_id=message_id,
                    posted_at=now,
                    claimed_by=None,
                    lease_until=None,
                )
                .returning(Round)
                .execution_options(synchronize_session=False)
            )
            if stored is None:  # another owner posted it first: this is a second thread of it
                stored = await session.get(Round, round_id)
        await self._thread_known(subscription.id, message_id)
        if stored is None or stored.question_message_id != message_id:
            ctx.metrics.platform_errors.labels(platform_name, "posted_twice").inc()
            log.warning(
                "round %s was posted twice; replies in message %s count for it too",
                round_id,
                message_id,
            )
            return stored
        ctx.metrics.rounds_posted.labels(platform_name).inc()
        log.info(
            "posted round %s (%s) to subscription %s", round_id, round_.scenario_id, subscription.id
        )
        return stored

    def question_card(self, round_: Round, subscription: Subscription) -> QuestionCard | None:
        """Return a round's question as its group sees it; None if its scenario is gone."""
        scenario = self.ctx.catalog.get(round_.scenario_id)
        if scenario is None:
            return None
        return QuestionCard.of(
            scenario,
            self.ctx.catalog.topics,
            round_date=round_.local_date,
            reveal_at=round_.reveal_due_at,
            timezone=subscription.timezone,
            rotation_left=round_.rotation_left,
            private=subscription.answer_mode == AnswerMode.PRIVATE,
        )

    async def _thread_known(self, subscription_id: int, thread_id: str) -> None:
        """Tell the listeners (the answers held for it) that a round's thread is known."""
        for listener in self.ctx.thread_listeners:
            try:
                await listener(subscription_id, thread_id)
            except Exception as error:  # the held replies stay held; the next tick adopts them
                log.warning("could not adopt the replies held for %s: %r", thread_id, error)

    async def reveal_round(self, round_id: int) -> RevealCard | None:
        """Reveal one posted round; None if it was already revealed (or is not posted yet)."""
        ctx = self.ctx
        await self._adopt_held(round_id)
        now = ctx.clock.now()
        async with ctx.db.deciding() as session:  # answers being stored finish first
            claimed = await session.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == RoundStatus.POSTED)
                .values(
                    status=RoundStatus.REVEALED,
                    revealed_at=now,
                    claimed_by=ctx.owner,
                    lease_until=ctx.lease_clock.now() + ctx.lease,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            round_ = await session.get(Round, round_id)
            assert round_ is not None
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            milestones = await self._update_stats(session, round_)
            await tallies.add(
                session,
                ctx.db.dialect,
                round_.subscription_id,
                round_.local_date,
                select(
                    Answer.member_id.label("member_id"),
                    case((Answer.on_time.is_(True), 1), else_=0).label("on_time"),
                    case((Answer.on_time.is_(True), 0), else_=1).label("late"),
                    Answer.points.label("points"),
                ).where(Answer.round_id == round_.id),
            )
        async with self._owning(round_id):
            return await self._post_reveal(round_id, milestones, look_first=False)

    async def _adopt_held(self, round_id: int) -> None:
        """Let the replies held for a round's threads join it before it is revealed.

        They came while the round was being posted, so before any reveal: on time. They
        usually join once the post is stored; if that failed or has not happened yet, they
        join here, and if that fails too the reveal fails and is tried again.
        """
        async with self.ctx.db.transaction() as session:
            threads = (
                await session.execute(
                    select(RoundThread.subscription_id, RoundThread.message_id)
                    .where(RoundThread.round_id == round_id)
                    .where(
                        select(HeldReply.message_id)
                        .where(
                            HeldReply.subscription_id == RoundThread.subscription_id,
                            HeldReply.thread_id == RoundThread.message_id,
                        )
                        .exists()
                    )
                )
            ).all()
        for subscription_id, thread_id in threads:
            for listener in self.ctx.thread_listeners:
                await listener(subscription_id, thread_id)

    async def republish_reveal(self, round_id: int) -> RevealCard | None:
        """Repair a reveal whose owner is gone: find the bot's reveal, else post it.

        The caller took the round over (``take_over``).
        """
        async with self.ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is None or round_.status != RoundStatus.REVEALED:
                return None
            if round_.reveal_message_id is not None:
                return None
        async with self._owning(round_id):
            return await self._post_reveal(round_id, (), look_first=True)

    async def _post_reveal(
        self, round_id: int, milestones: tuple[Milestone, ...], *, look_first: bool
    ) -> RevealCard:
        """Grade its answers, post a revealed round's reveal in its thread, send the feedback.

        The reveal's message id is stored before any feedback goes out, and the feedback goes
        out in the background, so members' private messages never hold a reveal up, and a
        failed feedback message never repeats it.
        """
        ctx = self.ctx
        coverage = await self.feedback.grade_round(round_id)
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
            shared: tuple[SharedAnswer, ...] = ()
            if subscription.answer_mode == AnswerMode.PRIVATE:
                shared = await self._shared_answers(session, round_id)
        on_time = tuple(member_ref(m) for a, m in answers if a.on_time)
        late = tuple(member_ref(m) for a, m in answers if not a.on_time)
        card = self._reveal_card(round_.scenario_id, on_time, late, milestones, coverage)
        card = replace(card, shared=shared)
        thread_id = round_.question_message_id
        assert thread_id is not None
        platform = ctx.platform(platform_name)
        try:
            message_id = None
            if look_first:
                assert round_.revealed_at is not None
                message_id = await platform.find_reveal(
                    subscription.channel_id,
                    thread_id,
                    card,
                    community_id=community_id,
                    since=round_.revealed_at - LOOK_BACK,
                )
                if message_id is not None:
                    log.warning(
                        "the reveal of round %s was already sent (message %s); keeping it",
                        round_id,
                        message_id,
                    )
            if message_id is None:
                message_id = await platform.post_reveal(
                    subscription.channel_id, thread_id, card, community_id=community_id
                )
        except ChannelUnavailable as error:
            ctx.metrics.platform_errors.labels(platform_name, "channel_unavailable").inc()
            await self.pause(round_.subscription_id, error.reason)
            return card
        async with ctx.db.transaction() as session:
            await session.execute(
                update(Round)
                .where(Round.id == round_id, Round.reveal_message_id.is_(None))
                .values(reveal_message_id=message_id, claimed_by=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
        ctx.metrics.rounds_revealed.labels(platform_name).inc()
        log.info("revealed round %s of subscription %s", round_id, round_.subscription_id)
        self.feedback.start_delivery(round_id)
        return card

    @staticmethod
    async def _shared_answers(session: AsyncSession, round_id: int) -> tuple[SharedAnswer, ...]:
        """Return a round's on-time private answers with their authors, first written first.

        Only the private parts: a member's replies in the thread were public already.
        """
        rows = (
            await session.execute(
                select(Answer.id, Member, Reply.text)
                .join(Member, Member.id == Answer.member_id)
                .join(Reply, Reply.answer_id == Answer.id)
                .where(
                    Answer.round_id == round_id,
                    Answer.on_time.is_(True),
                    Reply.message_id.startswith(PRIVATE_REPLY, autoescape=True),
                )
                .order_by(Answer.first_reply_at, Answer.id, Reply.posted_at, Reply.id)
            )
        ).all()
        texts: dict[int, tuple[Member, list[str]]] = {}
        for answer_id, member, text in rows:
            texts.setdefault(answer_id, (member, []))[1].append(text)
        return tuple(
            SharedAnswer(member_ref(member), "\n\n".join(parts)) for member, parts in texts.values()
        )

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
        coverage: RoundCoverage,
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
            coverage=coverage.coverage,
            graded=coverage.graded,
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

    async def _pick(self, session: AsyncSession, subscription: Subscription) -> Pick:
        """Choose the group's next scenario from its filters, its cycle and its last rounds."""
        catalog = self.ctx.catalog
        eligible = [Candidate.of(s) for s in self.eligible(subscription)]
        last = (
            await session.scalars(
                select(Round.scenario_id)
                .where(Round.subscription_id == subscription.id)
                .order_by(Round.local_date.desc())
                .limit(RECENT)
            )
        ).all()
        cycle = (
            await session.scalar(
                select(func.max(Round.cycle)).where(Round.subscription_id == subscription.id)
            )
            or 0
        )
        used = set(
            (
                await session.scalars(
                    select(Round.scenario_id).where(
                        Round.subscription_id == subscription.id, Round.cycle == cycle
                    )
                )
            ).all()
        )
        recent = [Candidate.of(s) for sid in last if (s := catalog.get(sid)) is not None]
        pick = next_pick(subscription.seed, eligible, cycle, used, recent)
        if pick is None:
            raise NoEligibleScenario(
                "no scenario in the question bank matches this study group's topics and "
                "difficulty; widen them with /prep schedule"
            )
        return pick

    @staticmethod
    async def _rotation_warning(
        session: AsyncSession, subscription_id: int, pick: Pick
    ) -> int | None:
        """Return how many scenarios are left if this round's post must warn, else None.

        The channel is warned once per cycle: on the first round after which fewer than
        ``FEW_LEFT`` unused scenarios remain.
        """
        if pick.left_after >= FEW_LEFT:
            return None
        warned = await session.scalar(
            select(Round.id)
            .where(
                Round.subscription_id == subscription_id,
                Round.cycle == pick.cycle,
                Round.rotation_left.is_not(None),
            )
            .limit(1)
        )
        return None if warned is not None else pick.left_after

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
            await self.pause(subscription_id, reason)

    async def pause(self, subscription_id: int, reason: str) -> None:
        """Pause a study group whose channel the platform no longer lets the bot post in."""
        async with self.ctx.db.transaction() as session:
            subscription = await session.get(Subscription, subscription_id)
            if subscription is not None:
                subscription.paused = True
                subscription.paused_reason = reason
                subscription.paused_at = self.ctx.clock.now()
        log.warning("paused subscription %s: %s", subscription_id, reason)
