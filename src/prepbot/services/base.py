"""What every service shares: the database, the catalog, the clock, the platforms, lookups.

Imports no chat platform library; platforms are reached only through the ChatPlatform protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.content.catalog import Catalog
from prepbot.core.clock import Clock, SystemClock
from prepbot.core.events import Place
from prepbot.core.schedule import Schedule, ScheduleError
from prepbot.core.views import MemberRef
from prepbot.observability import Metrics, Problems
from prepbot.services.ports import AnswerGrader, ChatPlatform
from prepbot.store.db import Database
from prepbot.store.models import Community, Member, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """The parts services work with, built once by the composition root."""

    db: Database
    catalog: Catalog
    clock: Clock
    platforms: dict[str, ChatPlatform] = field(default_factory=dict)
    default_schedule: Schedule = field(default_factory=Schedule)
    metrics: Metrics = field(default_factory=Metrics)
    problems: Problems = field(default_factory=Problems)
    # Who this process is when it owns a round in flight, and how long it vouches for one
    # without renewing: a round whose lease ran out belongs to a process that is gone.
    owner: str = field(default_factory=lambda: process_name())
    lease: timedelta = timedelta(seconds=90)
    lease_clock: Clock = field(default_factory=SystemClock)  # real time, whatever ``clock`` says
    # What grades answers at a reveal (None: the rubric grader), and how long it may take.
    grader: AnswerGrader | None = None
    grading_deadline: float = 4.0
    # How long answer text is kept after its round's reveal (None: for good).
    keep_answer_text: timedelta | None = None
    # Where members open the web archive (``http.public_url``); None where nothing serves it
    # (the terminal).
    public_url: str | None = "http://127.0.0.1:8080"
    # Called with (subscription id, thread id) once a round's thread is known.
    thread_listeners: list[Callable[[int, str], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.problems.metrics is None:
            self.problems.metrics = self.metrics

    def platform(self, name: str) -> ChatPlatform:
        """Return the platform a community lives on."""
        try:
            return self.platforms[name]
        except KeyError:
            raise LookupError(f"platform '{name}' is not running in this process") from None

    def insert_ignore(self, model: Any) -> Any:
        """Return an INSERT for a model or table that can do nothing on a unique-key conflict."""
        return insert_ignore(self.db.dialect, model)


def insert_ignore(dialect: str, model: Any) -> Any:
    """Return a dialect's INSERT for a model or table, with ON CONFLICT clauses."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


def process_name() -> str:
    """Return a name for this process that no other process (here or on a replica) shares."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def schedule_of(subscription: Subscription, *, timezone: str | None = None) -> Schedule:
    """Return a subscription's schedule as the schedule maths sees it (in ``timezone`` if given).

    Raises ScheduleError for a stored row that no longer makes sense (a removed time zone).
    """
    return Schedule(
        post_at=time.fromisoformat(subscription.post_at),
        timezone=timezone or subscription.timezone,
        weekdays=frozenset(int(d) for d in subscription.weekdays.split(",") if d),
        reveal_at=time.fromisoformat(subscription.reveal_at) if subscription.reveal_at else None,
        reveal_after=(
            timedelta(minutes=subscription.reveal_after_minutes)
            if subscription.reveal_after_minutes is not None
            else None
        ),
    )


def store_schedule(subscription: Subscription, schedule: Schedule) -> None:
    """Write a schedule into a subscription's columns."""
    subscription.post_at = f"{schedule.post_at:%H:%M}"
    subscription.timezone = schedule.timezone
    subscription.weekdays = ",".join(str(d) for d in sorted(schedule.weekdays))
    subscription.reveal_at = f"{schedule.reveal_at:%H:%M}" if schedule.reveal_at else None
    subscription.reveal_after_minutes = (
        int(schedule.reveal_after.total_seconds() // 60) if schedule.reveal_after else None
    )


def subscription_seed(place: Place) -> str:
    """Return the rotation seed of a channel: the same on every replica, different per channel."""
    key = f"{place.platform}\x00{place.community_id}\x00{place.channel_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def community_for(ctx: ServiceContext, session: AsyncSession, place: Place) -> Community:
    """Return the community of a place, creating it on first sight."""
    await session.execute(
        ctx.insert_ignore(Community)
        .values(platform=place.platform, external_id=place.community_id, name=place.community_name)
        .on_conflict_do_nothing()
    )
    community = await session.scalar(
        select(Community).where(
            Community.platform == place.platform, Community.external_id == place.community_id
        )
    )
    assert community is not None
    return community


def subscription_at(place: Place) -> Select[Subscription]:
    """Return a query for the subscription of a place (active or not)."""
    return (
        select(Subscription)
        .join(Community, Community.id == Subscription.community_id)
        .where(
            Community.platform == place.platform,
            Community.external_id == place.community_id,
            Subscription.channel_id == place.channel_id,
        )
    )


def local_today(ctx: ServiceContext, subscription: Subscription) -> date:
    """Return today's date in a subscription's time zone."""
    return readable_schedule(subscription).local_date(ctx.clock.now())


def readable_schedule(subscription: Subscription) -> Schedule:
    """Return a group's schedule for reading; in UTC if its stored time zone no longer exists.

    The scheduler reports such a group (and posts nothing there); lookups still answer.
    """
    try:
        return schedule_of(subscription)
    except ScheduleError:
        return schedule_of(subscription, timezone="UTC")


def member_ref(member: Member) -> MemberRef:
    """Return the neutral reference of a stored member."""
    return MemberRef(id=member.external_id, name=member.display_name)


def open_rounds(subscription_id: int) -> Select[Round]:
    """Return a query for a subscription's posted, unrevealed rounds, oldest first."""
    return (
        select(Round)
        .where(Round.subscription_id == subscription_id, Round.status == RoundStatus.POSTED)
        .order_by(Round.local_date)
    )


class Leases:
    """Rows (rounds, digests) this process is publishing, each with a lease it keeps renewing.

    A row in flight names its owner (``claimed_by``) and a lease (``lease_until``); while the
    block of ``owning`` runs, the lease is pushed forward every third of its length, however
    slow the platform is, so only a row whose owner died (or lost the database) looks
    abandoned to another process.
    """

    def __init__(self, ctx: ServiceContext, model: Any, what: str) -> None:
        self.ctx, self.model, self.what = ctx, model, what
        self.in_flight: set[int] = set()

    @contextlib.asynccontextmanager
    async def owning(self, row_id: int) -> AsyncIterator[None]:
        """Hold a row in flight: renew its lease until the block ends."""
        self.in_flight.add(row_id)
        renewer = asyncio.create_task(self._renew(row_id), name=f"lease-{self.what}-{row_id}")
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self.in_flight.discard(row_id)

    async def _renew(self, row_id: int) -> None:
        """Push a row's lease forward every third of its length; a failed renewal is retried."""
        ctx, model = self.ctx, self.model
        while True:
            await asyncio.sleep(ctx.lease.total_seconds() / 3)
            try:
                async with ctx.db.transaction() as session:
                    await session.execute(
                        update(model)
                        .where(model.id == row_id, model.claimed_by == ctx.owner)
                        .values(lease_until=ctx.lease_clock.now() + ctx.lease)
                        .execution_options(synchronize_session=False)
                    )
            except Exception as error:  # the database blinked: the next renewal tries again
                log.warning("could not renew the lease of %s %s: %r", self.what, row_id, error)
