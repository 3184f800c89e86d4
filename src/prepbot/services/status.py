"""A study group's status for its admin, and the paused groups for ``/healthz`` and metrics.

``/prep status`` shows a group's schedule, its next post and reveal, today's round, whether it
is paused (why, since when, how to resume), how much of the rotation is left and any current
problem touching it. ``health_problems`` lists every group paused because its platform refused
the channel, with everything in the problem registry, and keeps the paused-groups gauge
current. The database is the source of truth for pauses, so every replica reports the same.
Imports no chat platform library.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from prepbot.core.pauses import PauseExplanation, PauseKind, explain_pause
from prepbot.core.schedule import ScheduleError, format_weekdays
from prepbot.core.views import StatusProblem, StatusView
from prepbot.observability import Problem
from prepbot.services.admin import AdminError, group_problem_keys
from prepbot.services.base import ServiceContext, open_rounds, schedule_of
from prepbot.services.rounds import RoundService
from prepbot.store.models import Community, Round, RoundStatus, Subscription

PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord", "console": "console"}


@dataclass(frozen=True)
class PausedGroup:
    """A study group that is paused right now, and why."""

    subscription_id: int
    platform: str
    community_id: str
    channel_id: str
    channel_name: str
    reason: str | None
    explanation: PauseExplanation
    since: datetime | None

    @property
    def channel(self) -> str:
        """Return the channel as people name it: '#study', else its id."""
        return f"#{self.channel_name}" if self.channel_name else self.channel_id


class StatusService:
    """Tell admins and operators how the study groups are doing."""

    def __init__(self, ctx: ServiceContext, rounds: RoundService) -> None:
        self.ctx = ctx
        self.rounds = rounds
        self._noticed: dict[tuple[int, str | None], datetime] = {}

    async def status(self, subscription: Subscription) -> StatusView:
        """Return what an admin needs to know about one study group."""
        ctx = self.ctx
        now = ctx.clock.now()
        try:
            schedule = schedule_of(subscription)
        except ScheduleError as error:
            raise AdminError(
                f"This study group's schedule cannot be read ({error}). "
                "Set it again with /prep schedule, e.g. /prep schedule Europe/London."
            ) from None
        today = schedule.local_date(now)
        async with ctx.db.transaction() as session:
            stored = await session.get(Subscription, subscription.id)
            assert stored is not None
            subscription = stored
            today_round = await session.scalar(
                select(Round).where(
                    Round.subscription_id == subscription.id, Round.local_date == today
                )
            )
            open_ = (await session.scalars(open_rounds(subscription.id))).all()
            taken = set(
                (
                    await session.scalars(
                        select(Round.local_date).where(
                            Round.subscription_id == subscription.id, Round.local_date >= today
                        )
                    )
                ).all()
            )
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
        eligible = [s.id for s in self.rounds.eligible(subscription)]
        next_post = None
        next_reveal = None
        if not subscription.paused:
            day, post_time = schedule.next_post_after(now)
            while day in taken:  # posted early (post-now): that day's round is done
                day, post_time = schedule.next_post_after(post_time)
            next_post = post_time
            next_reveal = schedule.reveal_due(day, post_time)
        if open_:
            next_reveal = min(r.reveal_due_at for r in open_)
        explanation = explain_pause(subscription.paused_reason) if subscription.paused else None
        if today_round is not None:
            today_state = today_round.status
        else:
            today_state = "none" if schedule.is_scheduled(today) else "off"
        return StatusView(
            channel=f"#{subscription.channel_name or subscription.channel_id}",
            now=now,
            timezone=subscription.timezone,
            post_at=f"{schedule.post_at:%H:%M}",
            days=format_weekdays(schedule.weekdays),
            reveal=schedule.describe().rsplit(", reveal ", 1)[1],
            topics=tuple(subscription.topics),
            difficulties=tuple(subscription.difficulties),
            today=today_state,
            today_date=today,
            next_post=next_post,
            next_reveal=next_reveal,
            next_reveal_is_open_round=bool(open_),
            paused=subscription.paused,
            pause_cause=explanation.cause if explanation else None,
            pause_next_step=explanation.next_step() if explanation else None,
            pause_detail=explanation.detail if explanation else None,
            paused_since=self._since(subscription) if subscription.paused else None,
            rotation_left=sum(1 for s in eligible if s not in used),
            rotation_cycle=cycle + 1,
            answer_mode=subscription.answer_mode,
            digest=subscription.digest,
            eligible=len(eligible),
            problems=tuple(
                StatusProblem(p.component, p.message, p.since)
                for p in self.problems_of(subscription.id)
            ),
        )

    def problems_of(self, subscription_id: int) -> list[Problem]:
        """Return the current problems of one study group and of the whole bot."""
        key, prefix = group_problem_keys(subscription_id)
        return [
            p
            for p in self.ctx.problems.current()
            if p.key == key or p.key.startswith(prefix) or not p.key.startswith("subscription:")
        ]

    async def paused_groups(self) -> list[PausedGroup]:
        """Return every active study group that is paused; bring the gauge up to date."""
        async with self.ctx.db.transaction() as session:
            rows = (
                await session.execute(
                    select(Subscription, Community)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(Subscription.active.is_(True), Subscription.paused.is_(True))
                    .order_by(Subscription.id)
                )
            ).all()
        groups = [
            PausedGroup(
                subscription_id=subscription.id,
                platform=community.platform,
                community_id=community.external_id,
                channel_id=subscription.channel_id,
                channel_name=subscription.channel_name,
                reason=subscription.paused_reason,
                explanation=explain_pause(subscription.paused_reason),
                since=self._since(subscription),
            )
            for subscription, community in rows
        ]
        for kind in PauseKind:
            count = sum(1 for g in groups if g.explanation.kind is kind)
            self.ctx.metrics.paused_groups.labels(kind.value).set(count)
        still = {(g.subscription_id, g.reason) for g in groups}
        self._noticed = {k: v for k, v in self._noticed.items() if k in still}
        return groups

    async def refresh(self) -> None:
        """Bring the paused-groups gauge up to date."""
        await self.paused_groups()

    async def on_subscription_changed(self, _: Subscription) -> None:
        """Follow a pause, resume or unsubscribe in the gauge at once."""
        await self.refresh()

    async def health_problems(self) -> list[dict[str, Any]]:
        """Return, for /healthz, every group its platform paused and every current problem."""
        listed: list[dict[str, Any]] = []
        for group in await self.paused_groups():
            if group.explanation.kind is not PauseKind.PLATFORM:
                continue  # an admin's pause is a choice, not a problem
            platform = PLATFORM_NAMES.get(group.platform, group.platform)
            listed.append(
                {
                    "key": f"paused:{group.subscription_id}",
                    "component": "study group",
                    "message": (
                        f"{platform} channel {group.channel} ({group.channel_id}) is paused: "
                        f"{group.explanation.cause}. {group.explanation.next_step()}."
                    ),
                    "since": group.since.isoformat() if group.since else None,
                    "platform": group.platform,
                    "community": group.community_id,
                    "channel_id": group.channel_id,
                    "channel": group.channel,
                    "reason": group.reason,
                }
            )
        for problem in self.ctx.problems.current():
            listed.append(
                {
                    "key": problem.key,
                    "component": problem.component,
                    "message": problem.message,
                    "since": problem.since.isoformat(),
                }
            )
        return listed

    async def unsent_reveals(self, subscription_id: int) -> int:
        """Return how many revealed rounds of a group have no reveal message in the channel."""
        async with self.ctx.db.transaction() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Round)
                .where(
                    Round.subscription_id == subscription_id,
                    Round.status == RoundStatus.REVEALED,
                    Round.reveal_message_id.is_(None),
                )
            )
        return int(count or 0)

    def _since(self, subscription: Subscription) -> datetime:
        """Return when a group was paused: as stored, else when this process first saw it."""
        if subscription.paused_at is not None:
            return subscription.paused_at
        key = (subscription.id, subscription.paused_reason)
        return self._noticed.setdefault(key, self.ctx.clock.now())
