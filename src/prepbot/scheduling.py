"""Keeping time: posts and reveals on schedule, caught up after downtime, repaired after crashes.

The database is the source of truth. ``RoundScheduler.tick()`` looks at it and does whatever is
due: re-posts what a crash left half done, reveals overdue rounds (oldest first), posts
rounds whose time has come (or came less than the catch-up grace ago), then weekly digests.
Posts and reveals fan out fairly: communities (workspaces, servers) take turns, so a morning
post to many of them keeps every one busy at its platform's own pace instead of queueing
behind the first; at most ``concurrency`` are in flight. APScheduler 3.x (``AsyncIOScheduler``)
only decides *when* to look: a cron job per subscription at its post time, a date job per open
round at its reveal time, and a steady safety tick; every job rebuilds from the database and
nothing is kept in APScheduler's own stores. Only the process holding the leadership
(``prepbot.leadership``) schedules. Imports no chat platform library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import or_, select

from prepbot.core.schedule import DAY_NAMES, Schedule
from prepbot.leadership import AlreadyRunning, Leadership
from prepbot.observability import error_line
from prepbot.services import Services
from prepbot.services.base import schedule_of
from prepbot.services.digests import DueDigest
from prepbot.store.models import Community, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)

T = TypeVar("T")
RETENTION_EVERY = timedelta(hours=1)  # how often answer text past its retention is emptied
FEEDBACK_WINDOW = timedelta(days=1)  # feedback a restart interrupted still goes out this long


def fair_order(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Return items one per key in turn (keys in first-seen order), each key's own order kept."""
    queues: dict[Hashable, list[T]] = {}
    for item in items:
        queues.setdefault(key(item), []).append(item)
    lanes, ordered, depth = list(queues.values()), list[T](), 0
    while lanes := [lane for lane in lanes if depth < len(lane)]:
        ordered += [lane[depth] for lane in lanes]
        depth += 1
    return ordered


@dataclass
class TickReport:
    """What one tick did."""

    posted: list[tuple[int, date]] = field(default_factory=list)
    revealed: list[int] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)
    skipped: list[tuple[int, date]] = field(default_factory=list)
    digests: list[tuple[int, date]] = field(default_factory=list)


class RoundScheduler:
    """Post and reveal every study group's rounds on time, exactly once."""

    def __init__(
        self,
        services: Services,
        *,
        grace: timedelta = timedelta(hours=2),
        safety_interval: timedelta = timedelta(seconds=30),
        concurrency: int = 16,
    ) -> None:
        self.services = services
        self.concurrency = concurrency
        self.grace = grace
        self.safety_interval = safety_interval
        self._lock = asyncio.Lock()
        self._skipped: set[tuple[int, date]] = set()
        self._jobs: Any = None  # an AsyncIOScheduler while leading
        self._jobs_synced = False  # every subscription's and open round's job is in it
        self._job_ticks: set[asyncio.Future[None]] = set()
        self._text_expired_at: datetime | None = None  # the last retention pass
        self.leading = False
        services.admin.listeners.append(self.on_subscription_changed)

    @property
    def clock(self) -> Any:
        """Return the clock every decision is made with."""
        return self.services.ctx.clock

    async def tick(self) -> TickReport:
        """Do everything that is due now; safe to call at any time, from any job."""
        async with self._lock:
            return await self._tick()

    async def _job_tick(self) -> None:
        """Tick for an APScheduler job; stopping the jobs cancels the job, never a tick midway.

        (APScheduler's shutdown cancels running jobs: a fan-out cut between a post and its
        commit would leave the round to be posted again by the next leader.)
        """
        tick = asyncio.ensure_future(self._tick_unless_stopped())
        self._job_ticks.add(tick)
        tick.add_done_callback(self._job_ticks.discard)
        await asyncio.shield(tick)

    async def _tick_unless_stopped(self) -> None:
        async with self._lock:
            if self._jobs is None:  # the jobs stopped while this waited its turn
                return
            try:
                await self._tick()
            except Exception as error:  # the loop's next tick retries; say so, don't raise
                self.services.ctx.metrics.tick_failures.inc()
                log.error("a scheduled tick failed: %s", error_line(error))

    async def idle(self) -> None:
        """Wait until the tick in progress (if any) is done, a stopped job's tick included."""
        async with self._lock:
            pass

    async def _tick(self) -> TickReport:
        report = TickReport()
        await self._repair(report)
        await self.services.answers.adopt_held()
        await self._reveal_due(report)
        await self.services.rounds.feedback.deliver_pending(
            since=self.clock.now() - FEEDBACK_WINDOW
        )
        await self._post_due(report)
        await self._post_digests(report)
        if self._jobs is not None:
            await self._sync_reveal_jobs()
        await self._expire_answer_text()
        return report

    async def _expire_answer_text(self) -> None:
        """Empty answer text past the retention period, at most once an hour (if one is set)."""
        keep = self.services.ctx.keep_answer_text
        now = self.clock.now()
        if keep is None:
            return
        if self._text_expired_at is not None and now - self._text_expired_at < RETENTION_EVERY:
            return
        await self.services.privacy.drop_old_answer_text(keep, now)
        self._text_expired_at = now

    async def _repair(self, report: TickReport) -> None:
        """Finish what a gone owner left: claimed-but-unposted rounds, unsent reveals.

        A round in flight belongs to the process posting it, which keeps its lease alive
        however slow the platform is; only a round whose lease ran out is repaired, after this
        process takes it over, and the repair looks for the bot's own message before posting
        again. Repairs fan out like posts: communities take turns, several at once.
        """
        rounds = self.services.rounds
        now = self.services.ctx.lease_clock.now()  # leases run on real time
        abandoned = or_(Round.lease_until.is_(None), Round.lease_until < now)
        async with self.services.ctx.db.transaction() as session:
            found = (
                await session.execute(
                    select(Round.id, Round.status, Subscription.community_id)
                    .join(Subscription, Subscription.id == Round.subscription_id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        abandoned,
                        Community.platform.in_(list(self.services.ctx.platforms)),
                        or_(
                            Round.status == RoundStatus.CLAIMED,
                            (Round.status == RoundStatus.REVEALED)
                            & Round.reveal_message_id.is_(None)
                            & Subscription.paused.is_(False),
                        ),
                    )
                    .order_by(Round.local_date, Round.id)
                )
            ).all()
        busy = rounds.in_flight()
        orphans = [row for row in found if row[0] not in busy]

        async def repair(round_id: int, status: str) -> None:
            if not await rounds.take_over(round_id):
                return  # its owner renewed it meanwhile, or another process took it
            if status == RoundStatus.CLAIMED:
                log.warning("round %s was claimed by a process that is gone; repairing", round_id)
                if await rounds.publish(round_id) is not None:
                    report.repaired.append(round_id)
            else:
                log.warning("the reveal of round %s was never sent; repairing", round_id)
                if await rounds.republish_reveal(round_id) is not None:
                    report.repaired.append(round_id)

        fair = fair_order(orphans, key=lambda row: row[2])  # communities take turns
        await self._concurrently([repair(round_id, status) for round_id, status, _ in fair])

    async def _reveal_due(self, report: TickReport) -> None:
        now = self.clock.now()
        async with self.services.ctx.db.transaction() as session:
            due = (
                await session.execute(
                    select(Round.id, Round.subscription_id, Subscription.community_id)
                    .join(Subscription, Subscription.id == Round.subscription_id)
                    .where(Round.status == RoundStatus.POSTED, Round.reveal_due_at <= now)
                    .order_by(Round.subscription_id, Round.local_date)
                )
            ).all()
        by_group: dict[int, list[int]] = {}
        community: dict[int, int] = {}
        for round_id, subscription_id, community_id in due:
            by_group.setdefault(subscription_id, []).append(round_id)
            community[subscription_id] = community_id
        groups = fair_order(by_group, key=community.__getitem__)  # communities take turns

        async def reveal_group(round_ids: list[int]) -> None:
            for round_id in round_ids:  # one group's rounds in date order: streaks go in order
                if await self.services.rounds.reveal_round(round_id) is not None:
                    report.revealed.append(round_id)

        await self._concurrently([reveal_group(by_group[group]) for group in groups])

    async def _post_due(self, report: TickReport) -> None:
        now = self.clock.now()
        async with self.services.ctx.db.transaction() as session:
            subscriptions = (
                await session.scalars(
                    select(Subscription)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Subscription.active.is_(True),
                        Subscription.paused.is_(False),
                        # A platform still connecting posts once it is up (within the grace).
                        Community.platform.in_(list(self.services.ctx.platforms)),
                    )
                )
            ).all()
        candidates: list[tuple[Subscription, date, datetime]] = []
        for subscription in subscriptions:
            schedule = self._schedule_or_report(subscription)
            if schedule is None:
                continue  # reported; the others go on
            last = schedule.last_post_at_or_before(now)
            if last is not None and last[1] >= subscription.created_at:
                candidates.append((subscription, *last))  # else: before the group existed
        posted = await self._existing_rounds([(s.id, day) for s, day, _ in candidates])
        due: list[tuple[int, date, int]] = []
        for subscription, day, post_time in candidates:
            if (subscription.id, day) in posted:
                continue
            if now - post_time > self.grace:
                if (subscription.id, day) not in self._skipped:
                    self._skipped.add((subscription.id, day))
                    report.skipped.append((subscription.id, day))
                    log.warning(
                        "skipped the %s round of subscription %s: missed by %s (grace %s)",
                        day,
                        subscription.id,
                        now - post_time,
                        self.grace,
                    )
                continue
            due.append((subscription.id, day, subscription.community_id))

        async def post(subscription_id: int, day: date) -> None:
            outcome = await self.services.rounds.post_round(subscription_id, day)
            if outcome is not None and outcome.posted_now:
                report.posted.append((subscription_id, day))

        fair = fair_order(due, key=lambda item: item[2])  # communities take turns
        await self._concurrently([post(group, day) for group, day, _ in fair])

    async def _post_digests(self, report: TickReport) -> None:
        """Finish abandoned digests, then post the weekly digests whose time has come.

        They fan out like posts: communities take turns, several at once.
        """
        digests = self.services.digests
        await digests.repair()
        due = fair_order(await digests.due(), key=lambda item: item.community_id)

        async def post(item: DueDigest) -> None:
            if await digests.post(item) is not None:
                report.digests.append((item.subscription_id, item.week.end))

        await self._concurrently([post(item) for item in due])

    def _schedule_or_report(self, subscription: Subscription) -> Schedule | None:
        """Return a group's schedule, or report why it cannot have one and return None.

        A stored row that no longer makes sense (a time zone the system's database dropped,
        a corrupt time) is skipped and reported, never allowed to stop the other groups.
        """
        key = f"subscription:{subscription.id}:schedule"
        problems = self.services.ctx.problems
        try:
            schedule = schedule_of(subscription)  # checks the time zone exists
        except Exception as error:
            problems.report(
                key,
                "scheduler",
                f"study group #{subscription.channel_name or subscription.channel_id} "
                f"(subscription {subscription.id}) has a schedule that cannot be used "
                f"({error_line(error)}); no questions are posted there until an admin "
                "runs /prep schedule with a valid time and time zone",
            )
            return None
        problems.clear(key)
        return schedule

    async def _concurrently(self, jobs: list[Coroutine[Any, Any, None]]) -> None:
        """Run jobs side by side, at most ``concurrency`` at once, started in the given order.

        A failure stops no other job.
        """
        limit = asyncio.Semaphore(self.concurrency)

        async def limited(job: Coroutine[Any, Any, None]) -> None:
            async with limit:
                await job

        results = await asyncio.gather(*(limited(job) for job in jobs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            if isinstance(result, Exception):
                self._failed(result)

    def _failed(self, error: Exception) -> None:
        """Count and log a failure of scheduled work; it does not stop the tick."""
        self.services.ctx.metrics.platform_errors.labels("scheduler", type(error).__name__).inc()
        log.error("scheduled work failed: %r", error, exc_info=error)

    async def _existing_rounds(self, wanted: list[tuple[int, date]]) -> set[tuple[int, date]]:
        """Return which of the (subscription, date) rounds exist, in one query per 1,000."""
        found: set[tuple[int, date]] = set()
        async with self.services.ctx.db.transaction() as session:
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start : start + 1000]
                rows = await session.execute(
                    select(Round.subscription_id, Round.local_date).where(
                        Round.subscription_id.in_({s for s, _ in chunk}),
                        Round.local_date >= min(d for _, d in chunk),
                    )
                )
                found.update((s, d) for s, d in rows.all())
        return {item for item in wanted if item in found}

    # APScheduler: when to look.

    async def start_jobs(self) -> None:
        """Start APScheduler with a job per subscription and per open round."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        if self._jobs is not None and self._jobs_synced:
            return
        if self._jobs is None:
            jobs = AsyncIOScheduler(
                timezone="UTC", job_defaults={"coalesce": True, "misfire_grace_time": None}
            )
            jobs.add_job(
                self._job_tick,
                IntervalTrigger(seconds=self.safety_interval.total_seconds()),
                id="safety-tick",
            )
            jobs.start()
            self._jobs = jobs
            self._jobs_synced = False
        # If the database fails here, the next call (the next loop turn) picks up from here.
        async with self.services.ctx.db.transaction() as session:
            subscriptions = (await session.scalars(select(Subscription))).all()
        for subscription in subscriptions:
            self._sync_post_job(subscription)
        await self._sync_reveal_jobs()
        self._jobs_synced = True

    def stop_jobs(self) -> None:
        """Stop APScheduler (this process no longer leads)."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=False)
            self._jobs = None

    def job_ids(self) -> set[str]:
        """Return the ids of the scheduled jobs."""
        return {job.id for job in self._jobs.get_jobs()} if self._jobs is not None else set()

    def next_fire_time(self, job_id: str) -> datetime | None:
        """Return when a job fires next, if it is scheduled."""
        job = self._jobs.get_job(job_id) if self._jobs is not None else None
        return job.next_run_time if job is not None else None

    async def on_subscription_changed(self, subscription: Subscription) -> None:
        """Follow a subscribe, schedule, pause, resume or unsubscribe at once."""
        if self._jobs is not None:
            self._sync_post_job(subscription)

    def _sync_post_job(self, subscription: Subscription) -> None:
        from apscheduler.triggers.cron import CronTrigger

        job_id = f"post:{subscription.id}"
        if self._jobs.get_job(job_id) is not None:
            self._jobs.remove_job(job_id)
        if not subscription.active or subscription.paused:
            return
        schedule = self._schedule_or_report(subscription)
        if schedule is None:
            return  # the safety tick still covers every good group
        trigger = CronTrigger(
            day_of_week=",".join(DAY_NAMES[d] for d in sorted(schedule.weekdays)),
            hour=schedule.post_at.hour,
            minute=schedule.post_at.minute,
            timezone=schedule.zone,
        )
        self._jobs.add_job(self._job_tick, trigger, id=job_id)

    async def _sync_reveal_jobs(self) -> None:
        from apscheduler.triggers.date import DateTrigger

        async with self.services.ctx.db.transaction() as session:
            rounds = (
                await session.execute(
                    select(Round.id, Round.reveal_due_at).where(Round.status == RoundStatus.POSTED)
                )
            ).all()
        wanted = {f"reveal:{round_id}": due for round_id, due in rounds}
        for job in self._jobs.get_jobs():
            if job.id.startswith("reveal:") and job.id not in wanted:
                job.remove()
        for job_id, due in wanted.items():
            if self._jobs.get_job(job_id) is None and due > self.clock.now():
                self._jobs.add_job(self._job_tick, DateTrigger(run_date=due), id=job_id)


async def run_scheduling(
    scheduler: RoundScheduler,
    leadership: Leadership,
    stop: asyncio.Event,
    *,
    poll: timedelta,
    max_backoff: timedelta = timedelta(minutes=2),
) -> None:
    """Lead when possible: tick and keep jobs while leading, stand by (and retry) otherwise.

    Nothing here stops the process: a database that drops its connections, a table briefly
    missing, a tick that fails are logged, counted, reported (``/healthz``, ``/prep status``)
    and retried with a backoff that doubles up to ``max_backoff``; the platforms, health and
    answer intake keep running meanwhile.
    """
    leading = False
    failures = 0
    problems = scheduler.services.ctx.problems
    try:
        while not stop.is_set():
            wait = poll.total_seconds()
            try:
                if not leading:
                    if await leadership.acquire():
                        leading = scheduler.leading = True
                        log.info("this process now schedules rounds (%s)", leadership.describe())
                elif not await leadership.still_leading():
                    leading = scheduler.leading = False
                    scheduler.stop_jobs()
                    log.warning("lost the scheduling lead; standing by")
                if leading:
                    await scheduler.start_jobs()  # does nothing once the jobs run
                    await scheduler.tick()
            except AlreadyRunning:  # another process owns the embedded database: not ours to retry
                raise
            except Exception as error:
                failures += 1
                wait = min(poll.total_seconds() * 2**failures, max_backoff.total_seconds())
                scheduler.services.ctx.metrics.tick_failures.inc()
                problems.report(
                    TICK_PROBLEM,
                    "scheduler",
                    f"scheduling failed {failures} time{'s' if failures > 1 else ''} in a row "
                    f"({error_line(error)}); retrying every {wait:.0f} s",
                )
                log.error("scheduling failed; retrying in %.1f s", wait, exc_info=failures == 1)
            else:
                if failures:
                    log.info("scheduling works again after %d failed attempts", failures)
                failures = 0
                problems.clear(TICK_PROBLEM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
    finally:
        scheduler.leading = False
        scheduler.stop_jobs()
        # A job's tick may be mid fan-out: a standby that led now would post its rounds again.
        await scheduler.idle()
        await leadership.release()


TICK_PROBLEM = "scheduler:tick"
