"""Weekly digests: what a study group's week came to, posted once per group and week.

A digest is due when ``core.digests`` says so (by default after the week's last reveal) and
every round of its week is revealed. It is claimed in the ``digests`` table (unique per group
and week) before it is posted and completed with its message id after; while posting, the
claim carries a lease this process renews, and only a claim whose lease ran out is repaired,
after asking the platform for the bot's own post (by the picture's name) first. The digest
itself is built from the database: the week's rounds with their threads, participation, the
key points covered most and least, streak milestones and leaders, and the group's streak
calendar, drawn as a PNG by ``prepbot.pictures`` off the event loop. Imports no chat platform
library; platforms are reached through the ChatPlatform port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.core.digests import DIGEST_GRACE, OFF, DigestWeek, due_weeks
from prepbot.core.streaks import MILESTONES
from prepbot.core.views import (
    DIGEST_LEADERS,
    DIGEST_POINTS,
    PICTURE_MEMBERS,
    DigestCard,
    DigestMember,
    DigestPoint,
    DigestRound,
    MemberRef,
    Milestone,
    calendar_start,
)
from prepbot.observability import error_line
from prepbot.services.base import Leases, ServiceContext, schedule_of
from prepbot.services.ports import ChannelUnavailable
from prepbot.store.models import (
    Answer,
    AnswerGrade,
    Community,
    Digest,
    Member,
    MemberStats,
    Round,
    RoundStatus,
    Subscription,
)
from prepbot.web.links import archive_url, thread_url

log = logging.getLogger(__name__)

LOOK_BACK = timedelta(minutes=5)  # how long before its claim the bot's own post may be dated
NOTHING = "-"  # the message id of a week with no revealed round: nothing was posted
Draw = Callable[[DigestCard], bytes]


@dataclass(frozen=True)
class DueDigest:
    """A group's digest whose time has come: which group, where, which week."""

    subscription_id: int
    community_id: int
    week: DigestWeek


class DigestService:
    """Post each study group's weekly digest once, with its picture."""

    def __init__(self, ctx: ServiceContext, pause: Callable[[int, str], Awaitable[None]]) -> None:
        self.ctx = ctx
        self._pause = pause  # pauses a group whose channel is gone (RoundService.pause)
        self._leases = Leases(ctx, Digest, "digest")  # digests this process is posting now
        self.draw: Draw | None = None  # the picture renderer; None: text only (set by the app)

    async def due(self) -> list[DueDigest]:
        """Return the digests whose time has come, unclaimed, of weeks with a revealed round."""
        now = self.ctx.clock.now()
        async with self.ctx.db.transaction() as session:
            groups = (
                await session.scalars(
                    select(Subscription)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Subscription.active.is_(True),
                        Subscription.paused.is_(False),
                        Subscription.digest != OFF,
                        Community.platform.in_(list(self.ctx.platforms)),
                    )
                )
            ).all()
            wanted: list[DueDigest] = []
            for group in groups:
                try:
                    weeks = due_weeks(group.digest, schedule_of(group), now)
                except ValueError:
                    continue  # a schedule that cannot be used is reported by the scheduler
                wanted += [
                    DueDigest(group.id, group.community_id, week)
                    for week in weeks
                    if now - week.due <= DIGEST_GRACE and week.due >= group.created_at
                ]
            if not wanted:
                return []
            claimed = set(
                (
                    await session.execute(
                        select(Digest.subscription_id, Digest.period_end).where(
                            Digest.subscription_id.in_({d.subscription_id for d in wanted}),
                            Digest.period_end >= min(d.week.end for d in wanted),
                        )
                    )
                ).all()
            )
            wanted = [d for d in wanted if (d.subscription_id, d.week.end) not in claimed]
            if not wanted:
                return []
            had_rounds = set(  # a week without a revealed round has nothing to sum up
                (
                    await session.execute(
                        select(Round.subscription_id, Round.local_date).where(
                            Round.subscription_id.in_({d.subscription_id for d in wanted}),
                            Round.local_date >= min(d.week.start for d in wanted),
                            Round.status == RoundStatus.REVEALED,
                        )
                    )
                ).all()
            )
        days: dict[int, list[date]] = {}
        for subscription_id, day in had_rounds:
            days.setdefault(subscription_id, []).append(day)
        return [
            d
            for d in wanted
            if any(d.week.start <= day <= d.week.end for day in days.get(d.subscription_id, ()))
        ]

    async def post(self, item: DueDigest) -> str | None:
        """Claim and post one group's digest; return its message id (None: not posted now).

        Waits (returns None, claims nothing) while a round of the week is still open; a week
        without a revealed round is claimed with nothing to post, so it is not looked at again.
        """
        ctx = self.ctx
        week = item.week
        async with ctx.db.transaction() as session:
            statuses = (
                await session.scalars(
                    select(Round.status).where(
                        Round.subscription_id == item.subscription_id,
                        Round.local_date >= week.start,
                        Round.local_date <= week.end,
                    )
                )
            ).all()
            if any(status != RoundStatus.REVEALED for status in statuses):
                return None  # its reveal comes first; the next tick looks again
            now = ctx.lease_clock.now()
            claim = await session.execute(
                ctx.insert_ignore(Digest)
                .values(
                    subscription_id=item.subscription_id,
                    period_start=week.start,
                    period_end=week.end,
                    claimed_at=ctx.clock.now(),
                    claimed_by=ctx.owner,
                    lease_until=now + ctx.lease,
                    message_id=None if statuses else NOTHING,
                )
                .on_conflict_do_nothing()
            )
            if claim.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another process (or tick) has it
            digest_id = await session.scalar(
                select(Digest.id).where(
                    Digest.subscription_id == item.subscription_id, Digest.period_end == week.end
                )
            )
        if not statuses:
            log.info("no digest for subscription %s: no round in %s", item.subscription_id, week)
            return None
        assert digest_id is not None
        return await self._publish(digest_id, look_first=False)

    async def repair(self) -> list[int]:
        """Finish digests a gone process claimed but never posted, within the digest grace."""
        ctx = self.ctx
        now = ctx.lease_clock.now()
        async with ctx.db.transaction() as session:
            abandoned = (
                await session.scalars(
                    select(Digest.id)
                    .join(Subscription, Subscription.id == Digest.subscription_id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Digest.message_id.is_(None),
                        or_(Digest.lease_until.is_(None), Digest.lease_until < now),
                        Digest.claimed_at >= ctx.clock.now() - DIGEST_GRACE,
                        Community.platform.in_(list(ctx.platforms)),  # ones this process runs
                    )
                )
            ).all()
        repaired = []
        for digest_id in abandoned:
            if await self._take_over(digest_id):
                log.warning("digest %s was claimed by a process that is gone; repairing", digest_id)
                if await self._publish(digest_id, look_first=True) is not None:
                    repaired.append(digest_id)
        return repaired

    async def _take_over(self, digest_id: int) -> bool:
        ctx = self.ctx
        if digest_id in self._leases.in_flight:
            return False
        now = ctx.lease_clock.now()
        async with ctx.db.transaction() as session:
            taken = await session.execute(
                update(Digest)
                .where(
                    Digest.id == digest_id,
                    Digest.message_id.is_(None),
                    or_(Digest.lease_until.is_(None), Digest.lease_until < now),
                )
                .values(claimed_by=ctx.owner, lease_until=now + ctx.lease)
                .execution_options(synchronize_session=False)
            )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    async def _publish(self, digest_id: int, *, look_first: bool) -> str | None:
        """Build, draw and post a claimed digest; store its message id."""
        ctx = self.ctx
        async with self._leases.owning(digest_id):
            async with ctx.db.transaction() as session:
                digest = await session.get(Digest, digest_id)
                assert digest is not None
                group = await session.get(Subscription, digest.subscription_id)
                assert group is not None
                community = await session.get(Community, group.community_id)
                assert community is not None
                card = await self.card(
                    session, group, community, digest.period_start, digest.period_end
                )
            picture = await self._draw(card)
            platform = ctx.platform(community.platform)
            try:
                message_id = None
                if look_first:
                    message_id = await platform.find_digest(
                        group.channel_id,
                        card,
                        community_id=community.external_id,
                        since=digest.claimed_at - LOOK_BACK,
                    )
                if message_id is None:
                    message_id = await platform.post_digest(
                        group.channel_id, card, picture, community_id=community.external_id
                    )
            except ChannelUnavailable as error:
                ctx.metrics.platform_errors.labels(community.platform, "channel_unavailable").inc()
                await self._finish(digest_id, NOTHING)
                await self._pause(group.id, error.reason)
                return None
            await self._finish(digest_id, message_id)
        ctx.metrics.digests_posted.labels(community.platform).inc()
        log.info("posted the digest of subscription %s for %s", group.id, digest.period_end)
        return message_id

    async def _finish(self, digest_id: int, message_id: str) -> None:
        async with self.ctx.db.transaction() as session:
            await session.execute(
                update(Digest)
                .where(Digest.id == digest_id)
                .values(
                    message_id=message_id[:64],
                    posted_at=self.ctx.clock.now(),
                    claimed_by=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )

    async def _draw(self, card: DigestCard) -> bytes | None:
        """Draw the digest's picture in a worker thread; None (text only) if it cannot be."""
        if self.draw is None:
            return None
        try:
            return await asyncio.to_thread(self.draw, card)
        except Exception as error:  # a picture is a bonus: the text still goes out
            log.error(
                "could not draw the digest picture (%s); posting text only", error_line(error)
            )
            return None

    async def card(
        self,
        session: AsyncSession,
        group: Subscription,
        community: Community,
        start: date,
        end: date,
    ) -> DigestCard:
        """Build a group's digest of the revealed rounds from ``start`` to ``end``."""
        rounds = (
            await session.execute(
                select(Round.id, Round.local_date, Round.scenario_id, Round.question_message_id)
                .where(
                    Round.subscription_id == group.id,
                    Round.local_date >= start,
                    Round.local_date <= end,
                    Round.status == RoundStatus.REVEALED,
                )
                .order_by(Round.local_date)
            )
        ).all()
        ids = [r.id for r in rounds]
        counts = {
            round_id: (int(on_time or 0), int(late or 0))
            for round_id, on_time, late in (
                await session.execute(
                    select(
                        Answer.round_id,
                        func.sum(case((Answer.on_time.is_(True), 1), else_=0)),
                        func.sum(case((Answer.on_time.is_(False), 1), else_=0)),
                    )
                    .where(Answer.round_id.in_(ids))
                    .group_by(Answer.round_id)
                )
            ).all()
        }
        titles = {r.scenario_id: self._title(r.scenario_id) for r in rounds}
        digest_rounds = tuple(
            DigestRound(
                local_date=r.local_date,
                scenario_id=r.scenario_id,
                title=titles[r.scenario_id],
                link=thread_url(
                    community.platform,
                    community.external_id,
                    group.channel_id,
                    r.question_message_id,
                ),
                on_time=counts.get(r.id, (0, 0))[0],
                late=counts.get(r.id, (0, 0))[1],
            )
            for r in rounds
        )
        members, answers = (
            await session.execute(
                select(func.count(func.distinct(Answer.member_id)), func.count()).where(
                    Answer.round_id.in_(ids)
                )
            )
        ).one()
        ranked = await self._ranked(session, group.id, ids)
        most, least = await self._coverage(session, rounds)
        calendar = (
            await session.execute(
                select(
                    Round.local_date,
                    func.sum(case((Answer.on_time.is_(True), 1), else_=0)),
                )
                .outerjoin(Answer, Answer.round_id == Round.id)
                .where(
                    Round.subscription_id == group.id,
                    Round.status == RoundStatus.REVEALED,
                    Round.local_date >= calendar_start(end),
                    Round.local_date <= end,
                )
                .group_by(Round.local_date)
                .order_by(Round.local_date)
            )
        ).all()
        link = None
        if group.archive_token and self.ctx.public_url:
            link = archive_url(self.ctx.public_url, group.archive_token)
        return DigestCard(
            group=group.channel_name or group.channel_id,
            period_start=start,
            period_end=end,
            rounds=digest_rounds,
            members=int(members or 0),
            answers=int(answers or 0),
            most_covered=most,
            least_covered=least,
            milestones=await self._milestones(session, group.id, end, rounds),
            leaders=ranked[:DIGEST_LEADERS],
            participation=ranked[:PICTURE_MEMBERS],
            calendar=tuple((day, int(made or 0)) for day, made in calendar),
            archive_link=link,
        )

    def _title(self, scenario_id: str) -> str:
        scenario = self.ctx.catalog.get(scenario_id)
        return scenario.title if scenario is not None else scenario_id

    @staticmethod
    async def _ranked(
        session: AsyncSession, subscription_id: int, round_ids: list[int]
    ) -> tuple[DigestMember, ...]:
        """Return the week's most active members: on time, then points, streak, late, name."""
        on_time = func.sum(case((Answer.on_time.is_(True), 1), else_=0))
        late = func.sum(case((Answer.on_time.is_(False), 1), else_=0))
        points = func.sum(Answer.points)
        streak = func.coalesce(func.max(MemberStats.current_streak), 0)
        rows = (
            await session.execute(
                select(Member.external_id, Member.display_name, on_time, late, points, streak)
                .join(Answer, Answer.member_id == Member.id)
                .outerjoin(
                    MemberStats,
                    (MemberStats.member_id == Member.id)
                    & (MemberStats.subscription_id == subscription_id),
                )
                .where(Answer.round_id.in_(round_ids))
                .group_by(Member.id, Member.external_id, Member.display_name)
                .order_by(
                    on_time.desc(),
                    points.desc(),
                    streak.desc(),
                    late.desc(),
                    func.lower(Member.display_name),
                )
                .limit(PICTURE_MEMBERS)
            )
        ).all()
        return tuple(
            DigestMember(MemberRef(ext, name), int(ot or 0), int(lt or 0), int(pt or 0), int(st))
            for ext, name, ot, lt, pt, st in rows
        )

    async def _coverage(
        self, session: AsyncSession, rounds: Sequence[Any]
    ) -> tuple[tuple[DigestPoint, ...], tuple[DigestPoint, ...]]:
        """Return the week's key points made most and least often by graded answers."""
        points: list[DigestPoint] = []
        for r in rounds:
            scenario = self.ctx.catalog.get(r.scenario_id)
            if scenario is None or scenario.rubric is None:
                continue
            covered = (
                await session.scalars(
                    select(AnswerGrade.covered).where(AnswerGrade.round_id == r.id)
                )
            ).all()
            if not covered:
                continue
            made = {p.id: 0 for p in scenario.rubric.key_points}
            for ids in covered:
                for point_id in ids:
                    if point_id in made:
                        made[point_id] += 1
            points += [
                DigestPoint(p.point, scenario.title, made[p.id], len(covered))
                for p in scenario.rubric.key_points
            ]
        by_share = sorted(points, key=lambda p: (-p.share, -p.made, p.title, p.point))
        most = tuple(p for p in by_share[:DIGEST_POINTS] if p.made)  # never "most" at 0%
        rest = by_share[len(most) :]
        least = tuple(reversed(rest[-DIGEST_POINTS:]))
        return most, least

    @staticmethod
    async def _milestones(
        session: AsyncSession, subscription_id: int, end: date, rounds: Sequence[Any]
    ) -> tuple[Milestone, ...]:
        """Return the streak milestones reached in the week by members whose streak still runs.

        A member's streak at the week's end is their current streak (no later round is
        revealed yet); the on-time rounds that end the week built its last part, so the
        milestone it crossed is the one between the two. (A streak that reached a milestone
        mid-week and then broke is not listed.)
        """
        later = await session.scalar(
            select(func.count())
            .select_from(Round)
            .where(
                Round.subscription_id == subscription_id,
                Round.local_date > end,
                Round.status == RoundStatus.REVEALED,
            )
        )
        if later or not rounds:
            return ()  # streaks have moved on since: they no longer say where the week ended
        order = [r.id for r in rounds]
        rows = (
            await session.execute(
                select(Member, MemberStats.current_streak, Answer.round_id)
                .join(MemberStats, MemberStats.member_id == Member.id)
                .join(Answer, Answer.member_id == Member.id)
                .where(
                    MemberStats.subscription_id == subscription_id,
                    MemberStats.current_streak >= MILESTONES[0],
                    Answer.round_id.in_(order),
                    Answer.on_time.is_(True),
                )
            )
        ).all()
        answered: dict[int, tuple[Member, int, set[int]]] = {}
        for member, current, round_id in rows:
            answered.setdefault(member.id, (member, current, set()))[2].add(round_id)
        found: list[Milestone] = []
        for member, current, on_time in answered.values():
            trailing = 0
            for round_id in reversed(order):
                if round_id not in on_time:
                    break
                trailing += 1
            before = max(current - trailing, 0)
            crossed = [m for m in MILESTONES if before < m <= current]
            if crossed:
                ref = MemberRef(member.external_id, member.display_name)
                found.append(Milestone(ref, crossed[-1]))
        found.sort(key=lambda m: (-m.streak, m.member.name.lower()))
        return tuple(found)
