"""Study-group administration: subscribe, reschedule, pause, resume, unsubscribe.

Schedule and filter changes are validated against the question bank before anything is
stored. Listeners (the scheduler, the paused-groups gauge) hear about every change so they
follow at once. A resume forgets the pause's reason and the group's current problems. Imports
no chat platform library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from prepbot.core.commands import ScheduleChange
from prepbot.core.events import Place
from prepbot.core.rotation import matching
from prepbot.core.schedule import Schedule, ScheduleError
from prepbot.services.base import (
    ServiceContext,
    community_for,
    schedule_of,
    store_schedule,
    subscription_at,
    subscription_seed,
)
from prepbot.store.models import Subscription

SubscriptionListener = Callable[[Subscription], Awaitable[None]]


def group_problem_keys(subscription_id: int) -> tuple[str, str]:
    """Return the problem-registry key of a study group and the prefix of its sub-keys."""
    key = f"subscription:{subscription_id}"
    return key, key + ":"


class AdminError(Exception):
    """An admin request that cannot be carried out; ``str()`` says why, for the user."""


class AdminService:
    """Create and change subscriptions."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.listeners: list[SubscriptionListener] = []

    async def subscription(self, place: Place) -> Subscription | None:
        """Return the subscription of a channel, active or not."""
        async with self.ctx.db.transaction() as session:
            return await session.scalar(subscription_at(place))

    async def get(self, subscription_id: int) -> Subscription | None:
        """Return a subscription as it is stored now."""
        async with self.ctx.db.transaction() as session:
            return await session.get(Subscription, subscription_id)

    async def subscribe(self, place: Place, change: ScheduleChange) -> Subscription:
        """Make a channel a study group (or bring an unsubscribed one back)."""
        async with self.ctx.db.transaction() as session:
            existing = await session.scalar(subscription_at(place))
            if existing is not None and existing.active:
                raise AdminError(
                    "This channel is already a study group "
                    f"({schedule_of(existing).describe()}). Use /prep schedule to change it."
                )
            base = schedule_of(existing) if existing else self.ctx.default_schedule
            schedule = self._apply(base, change)
            community = await community_for(self.ctx, session, place)
            subscription = existing or Subscription(
                community_id=community.id,
                channel_id=place.channel_id,
                seed=subscription_seed(place),
                created_at=self.ctx.clock.now(),
                topics=[],
                difficulties=[],
            )
            subscription.channel_name = place.channel_name
            subscription.active, subscription.paused, subscription.paused_reason = True, False, None
            subscription.paused_at = None
            store_schedule(subscription, schedule)
            self._apply_filters(subscription, change)
            session.add(subscription)
        await self._notify(subscription)
        return subscription

    async def reschedule(self, subscription: Subscription, change: ScheduleChange) -> Subscription:
        """Change a study group's schedule or filters; only what was given changes."""
        async with self.ctx.db.transaction() as session:
            stored = await session.get(Subscription, subscription.id)
            assert stored is not None
            try:
                current = schedule_of(stored)
            except ScheduleError as error:  # e.g. a time zone a tzdata update removed
                if change.timezone is None:
                    raise AdminError(
                        f"This study group's stored schedule cannot be used ({error}). "
                        "Give it a time zone, e.g. /prep schedule Europe/London."
                    ) from None
                current = schedule_of(stored, timezone=change.timezone)
            store_schedule(stored, self._apply(current, change))
            self._apply_filters(stored, change)
        await self._notify(stored)
        return stored

    async def set_paused(
        self, subscription: Subscription, paused: bool, reason: str | None
    ) -> Subscription:
        """Pause or resume a study group; a resume also forgets the group's current problems."""
        async with self.ctx.db.transaction() as session:
            stored = await session.get(Subscription, subscription.id)
            assert stored is not None
            if paused and not stored.paused:
                stored.paused_at = self.ctx.clock.now()
            stored.paused, stored.paused_reason = paused, reason if paused else None
            if not paused:
                stored.paused_at = None
        if not paused:
            key, prefix = group_problem_keys(stored.id)
            self.ctx.problems.clear(key)
            self.ctx.problems.clear_matching(prefix)
        await self._notify(stored)
        return stored

    async def unsubscribe(self, subscription: Subscription) -> Subscription:
        """End a study group; its history stays for leaderboards."""
        async with self.ctx.db.transaction() as session:
            stored = await session.get(Subscription, subscription.id)
            assert stored is not None
            stored.active = False
        await self._notify(stored)
        return stored

    def _apply(self, base: Schedule, change: ScheduleChange) -> Schedule:
        reveal_at, reveal_after = base.reveal_at, base.reveal_after
        if change.reveal_at is not None:
            reveal_at, reveal_after = change.reveal_at, None
        elif change.reveal_after is not None:
            reveal_at, reveal_after = None, change.reveal_after
        try:
            return replace(
                base,
                post_at=change.post_at or base.post_at,
                timezone=change.timezone or base.timezone,
                weekdays=change.weekdays or base.weekdays,
                reveal_at=reveal_at,
                reveal_after=reveal_after,
            )
        except ScheduleError as error:
            raise AdminError(str(error)) from None

    def _apply_filters(self, subscription: Subscription, change: ScheduleChange) -> None:
        """Check topic and difficulty filters against the bank, then store them."""
        catalog = self.ctx.catalog
        topics = list(change.topics) if change.topics is not None else subscription.topics
        difficulties = (
            list(change.difficulties)
            if change.difficulties is not None
            else subscription.difficulties
        )
        found = {t: t if t in catalog.topics else catalog.find_topic(t) for t in topics}
        unknown = [t for t, topic in found.items() if topic is None]
        if unknown:
            hints = [
                f"`{t}` (did you mean {' or '.join(f'`{s}`' for s in near)}?)"
                if (near := catalog.suggest_topics(t))
                else f"`{t}`"
                for t in unknown
            ]
            raise AdminError(
                f"Unknown topic{'s' if len(unknown) > 1 else ''}: {', '.join(hints)}. "
                "See /prep topics."
            )
        topics = list(dict.fromkeys(topic for topic in found.values() if topic is not None))
        if not matching(catalog.scenarios, topics, difficulties):
            raise AdminError("No scenario matches those topics and difficulties together.")
        subscription.topics, subscription.difficulties = topics, difficulties
        if change.answer_mode is not None:
            subscription.answer_mode = change.answer_mode
        if change.digest is not None:
            subscription.digest = change.digest

    async def _notify(self, subscription: Subscription) -> None:
        for listener in self.listeners:
            await listener(subscription)
