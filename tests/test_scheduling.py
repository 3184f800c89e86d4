"""The scheduler: on time in every zone, caught up after downtime, repaired after crashes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import ScheduleChange
from prepbot.core.events import Invocation, Place
from prepbot.core.schedule import Schedule, parse_weekdays
from prepbot.core.views import MemberRef, QuestionCard, RevealCard
from prepbot.leadership import AlreadyRunning, PostgresLeadership, SqliteSingleProcess
from prepbot.scheduling import RoundScheduler
from prepbot.services import Services
from prepbot.store.models import Round, RoundStatus, Subscription
from tests.fakes import RecordingPlatform

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, a week before New York's DST change
STEP = timedelta(minutes=55)  # not a divisor of an hour, so ticks land at many minutes


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def subscribe(app: App, channel: str, spec: str) -> Subscription:
    from prepbot.core.commands import Subscribe, parse_prep

    command = parse_prep(f"subscribe {spec}")
    assert isinstance(command, Subscribe)
    return await app.services.admin.subscribe(Place("fake", "T1", channel), command.change)


def posts_per_round(platform: RecordingPlatform) -> Counter[tuple[str, date | None]]:
    return Counter((channel, card.round_date) for channel, card in platform.questions)


@pytest.mark.slow(seconds=30)
async def test_a_month_in_three_zones_posts_and_reveals_every_round_once(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe(app, "ny", "09:00 America/New_York mon-fri reveal=17:00")
    await subscribe(app, "london", "08:30 Europe/London daily reveal=+6h")
    await subscribe(app, "kolkata", "07:00 Asia/Kolkata mon,wed,fri reveal=21:00")
    scheduler = RoundScheduler(app.services, grace=timedelta(hours=2))
    end = START + timedelta(days=35)
    while clock.now() < end:
        await scheduler.tick()
        clock.advance(STEP)
    await scheduler.tick()

    posts = posts_per_round(platform)
    assert set(posts.values()) == {1}
    expected = {
        "ny": Schedule(timezone="America/New_York", weekdays=parse_weekdays("mon-fri")),
        "london": Schedule(timezone="Europe/London", weekdays=parse_weekdays("daily")),
        "kolkata": Schedule(timezone="Asia/Kolkata", weekdays=parse_weekdays("mon,wed,fri")),
    }
    for channel, schedule in expected.items():
        days = {d for c, d in posts if c == channel}
        want = {
            START.date() + timedelta(days=n)
            for n in range(35)
            if schedule.is_scheduled(START.date() + timedelta(days=n))
        }
        assert days == want, channel
    threads = Counter(thread for _, thread, _ in platform.reveals)
    assert set(threads.values()) == {1}
    assert len(platform.reveals) == len(platform.questions)
    async with app.db.transaction() as session:
        rounds = (await session.scalars(select(Round))).all()
    for round_ in rounds:
        assert round_.posted_at is not None
        assert round_.revealed_at is not None
        assert round_.posted_at <= round_.revealed_at
        assert round_.revealed_at - round_.reveal_due_at < STEP
    new_york = [
        r for r in rounds if r.local_date == date(2026, 3, 9) and r.reveal_due_at.hour == 21
    ]
    assert new_york, "New York's reveal at 17:00 EDT is 21:00 UTC after the change"


async def test_catch_up_posts_a_recent_miss_and_skips_an_old_one(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    recent = await subscribe(app, "recent", "09:00 UTC daily reveal=+6h")
    old = await subscribe(app, "old", "05:00 UTC daily reveal=+6h")
    scheduler = RoundScheduler(app.services, grace=timedelta(hours=2))
    clock.set(START + timedelta(days=1, hours=9, minutes=45))  # down since before 05:00
    report = await scheduler.tick()
    assert report.posted == [(recent.id, date(2026, 3, 3))]
    assert report.skipped == [(old.id, date(2026, 3, 3))]
    async with app.db.transaction() as session:
        late = await session.scalar(select(Round).where(Round.subscription_id == recent.id))
    assert late is not None
    assert late.reveal_due_at == clock.now() + timedelta(hours=6)  # the reveal moves too
    assert (await scheduler.tick()).skipped == []  # logged once, not every tick
    clock.set(START + timedelta(days=2, hours=5, minutes=1))
    assert (await scheduler.tick()).posted == [(old.id, date(2026, 3, 4))]


async def test_a_new_group_starts_with_its_next_scheduled_post(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    clock.set(START + timedelta(hours=9, minutes=30))
    await subscribe(app, "new", "09:00 UTC daily")
    scheduler = RoundScheduler(app.services)
    assert (await scheduler.tick()).posted == []
    clock.set(START + timedelta(days=1, hours=9))
    assert len((await scheduler.tick()).posted) == 1


async def test_an_overdue_reveal_runs_at_once_after_downtime(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    scheduler = RoundScheduler(app.services)
    clock.set(START + timedelta(hours=9))
    await scheduler.tick()
    clock.set(START + timedelta(hours=23))  # down over the reveal time
    report = await scheduler.tick()
    assert len(report.revealed) == 1
    assert len(platform.reveals) == 1


class Killed(Exception):
    """The process died here: nothing after this point happened."""


class CrashingPlatform(RecordingPlatform):
    """Fails like a killed process the first time it is asked to post."""

    crash_on: str = "question"

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        if self.crash_on == "question":
            self.crash_on = ""
            raise Killed("killed between claim and post")
        return await super().post_question(channel_id, card, community_id=community_id)

    async def post_reveal(
        self, channel_id: str, thread_id: str, card: RevealCard, *, community_id: str | None = None
    ) -> str:
        if self.crash_on == "reveal":
            self.crash_on = ""
            raise Killed("killed between reveal and its message")
        return await super().post_reveal(channel_id, thread_id, card, community_id=community_id)


@pytest.mark.parametrize("crash_on", ["question", "reveal"])
async def test_work_a_crash_left_half_done_is_finished_once(
    app: App, clock: ManualClock, crash_on: str
):
    crashing = CrashingPlatform()
    crashing.crash_on = crash_on
    app.services.ctx.platforms["fake"] = crashing
    app.services.ctx.lease_clock = clock
    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    scheduler = RoundScheduler(app.services)
    clock.set(START + timedelta(hours=9))
    if crash_on == "question":
        await scheduler.tick()
        async with app.db.transaction() as session:
            assert await session.scalar(select(Round.status)) == RoundStatus.CLAIMED
    else:
        await scheduler.tick()
        clock.set(START + timedelta(hours=17))
        await scheduler.tick()
        async with app.db.transaction() as session:
            assert await session.scalar(select(Round.status)) == RoundStatus.REVEALED
            assert await session.scalar(select(Round.reveal_message_id)) is None
    same_process = await RoundScheduler(app.services).tick()
    assert same_process.repaired == []  # the lease has not run out: its owner may be alive
    clock.advance(app.services.ctx.lease + timedelta(seconds=1))
    restarted = RoundScheduler(next_process(app))
    report = await restarted.tick()
    assert len(report.repaired) == 1
    await restarted.tick()
    assert len(crashing.questions) == 1
    assert len(crashing.reveals) == (1 if crash_on == "reveal" else 0)


def admin_says(text: str, channel: str = "c") -> Invocation:
    return Invocation(Place("fake", "T1", channel), MemberRef("U1", "Admin"), True, text)


def next_process(app: App) -> Services:
    """Return the services of another process on the same database and platforms."""
    return Services.build(dataclasses.replace(app.services.ctx, owner="the next process"))


@pytest.mark.parametrize("step", ["question", "reveal"])
async def test_a_slow_post_in_flight_is_never_repaired_into_a_second_post(
    app: App, clock: ManualClock, step: str
):
    """A post that takes longer than a tick (35 s, a long Retry-After) is not posted again."""
    slow = RecordingPlatform()
    app.services.ctx.platforms["fake"] = slow
    app.services.ctx.lease = timedelta(seconds=0.3)  # renewed every 0.1 s while in flight
    app.services.ctx.lease_clock = clock
    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    scheduler = RoundScheduler(app.services)
    clock.set(START + timedelta(hours=9))
    if step == "reveal":
        await scheduler.tick()
        clock.set(START + timedelta(hours=17))
    slow.hold = asyncio.Event()
    first = asyncio.ensure_future(scheduler.tick())
    await asyncio.sleep(0.05)
    others = [RoundScheduler(app.services), RoundScheduler(next_process(app))]
    for _ in range(5):  # a minute of safety ticks on this replica and another
        clock.advance(timedelta(seconds=0.2))
        await asyncio.sleep(0.2)
        for other in others:
            assert (await other.tick()).repaired == []
    if step == "question":
        assert (await app.services.commands.handle(admin_says("post-now"))).views
    slow.hold.set()
    await first
    assert len(slow.questions) == 1
    assert len(slow.reveals) == (1 if step == "reveal" else 0)


async def test_a_post_made_but_never_acknowledged_is_found_not_posted_again(
    app: App, clock: ManualClock
):
    """The platform made the message but its answer was lost: the repair finds it."""
    lossy = RecordingPlatform(lost=1)
    app.services.ctx.platforms["fake"] = lossy
    app.services.ctx.lease_clock = clock
    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    clock.set(START + timedelta(hours=9))
    await RoundScheduler(app.services).tick()  # the post raises; the round stays claimed
    clock.advance(app.services.ctx.lease + timedelta(seconds=1))
    report = await RoundScheduler(app.services).tick()
    assert len(report.repaired) == 1
    assert len(lossy.questions) == 1
    async with app.db.transaction() as session:
        round_ = await session.scalar(select(Round))
        assert round_ is not None
        assert (round_.status, round_.question_message_id) == (RoundStatus.POSTED, "q1")


async def test_jobs_follow_the_subscriptions_at_once(app: App, platform: RecordingPlatform):
    clock = app.services.ctx.clock
    assert isinstance(clock, ManualClock)
    clock.set(datetime.now(UTC))
    group = await subscribe(app, "c", "09:00 Europe/London mon-fri")
    scheduler = RoundScheduler(app.services)
    await scheduler.start_jobs()
    try:
        job = f"post:{group.id}"
        assert job in scheduler.job_ids()
        expected = Schedule(
            post_at=time(9), timezone="Europe/London", weekdays=parse_weekdays("mon-fri")
        ).next_post_after(datetime.now(UTC))[1]
        fire = scheduler.next_fire_time(job)
        assert fire is not None
        assert fire.astimezone(UTC) == expected
        change = ScheduleChange(post_at=time(7, 15), timezone="Asia/Kolkata")
        await app.services.admin.reschedule(group, change)
        moved = scheduler.next_fire_time(job)
        assert moved is not None
        assert (moved.hour, moved.minute, str(moved.tzinfo)) == (7, 15, "Asia/Kolkata")
        await app.services.admin.set_paused(group, True, "paused by an admin")
        assert job not in scheduler.job_ids()
        await app.services.admin.set_paused(group, False, None)
        assert job in scheduler.job_ids()
        await app.services.rounds.post_round(group.id, clock.now().date() + timedelta(days=7))
        await scheduler.tick()
        assert any(j.startswith("reveal:") for j in scheduler.job_ids())
    finally:
        scheduler.stop_jobs()


async def test_sqlite_refuses_a_second_process(tmp_path: Path):
    database = tmp_path / "prepbot.db"
    first, second = SqliteSingleProcess(database), SqliteSingleProcess(database)
    assert await first.acquire()
    with pytest.raises(AlreadyRunning, match=r"already running on .*prepbot\.db.*PostgreSQL"):
        await second.acquire()
    await first.release()
    assert await second.acquire()
    await second.release()


async def test_one_postgres_leader_at_a_time(postgres_url: str):
    first, second = (
        PostgresLeadership(postgres_url, key=42),
        PostgresLeadership(postgres_url, key=42),
    )
    try:
        assert await first.acquire()
        assert not await second.acquire()
        assert await first.still_leading()
        await first.release()  # as when the leader's connection dies
        assert await second.acquire()
        assert not await first.acquire()
    finally:
        await first.release()
        await second.release()
    await asyncio.sleep(0)


class SlowPlatform(RecordingPlatform):
    """Takes a while per post and counts how many posts are in flight at once."""

    in_flight: int = 0
    most: int = 0
    broken: str = "c-broken"

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            if channel_id == self.broken:
                raise RuntimeError("Slack returned 500 three times")
            return await super().post_question(channel_id, card, community_id=community_id)
        finally:
            self.in_flight -= 1


async def test_many_channels_post_side_by_side_within_the_limit(app: App, clock: ManualClock):
    slow = SlowPlatform()
    app.services.ctx.platforms["fake"] = slow
    for n in range(12):
        await subscribe(app, f"c{n}", "09:00 UTC daily")
    await subscribe(app, "c-broken", "09:00 UTC daily")
    scheduler = RoundScheduler(app.services, concurrency=5)
    clock.set(START + timedelta(hours=9))
    report = await scheduler.tick()
    assert len(report.posted) == 12  # the broken channel stops no other
    assert slow.most == 5


async def test_a_reply_before_the_slow_post_returns_is_held_and_counts(
    app: App, clock: ManualClock
):
    """Members see the question while the platform is still answering; their replies count."""
    from prepbot.core.events import ReplyDeleted, ThreadReply
    from prepbot.services.answers import AnswerStatus

    hold = asyncio.Event()
    slow = RecordingPlatform(hold=hold)
    app.services.ctx.platforms["fake"] = slow
    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    scheduler = RoundScheduler(app.services)
    clock.set(START + timedelta(hours=9))
    posting = asyncio.ensure_future(scheduler.tick())
    while not slow.questions:
        await asyncio.sleep(0.01)
    place, at = Place("fake", "T1", "c"), clock.now()
    ann, bob = MemberRef("U2", "Ann"), MemberRef("U3", "Bob")
    answers = app.services.answers
    held = await answers.record(ThreadReply(place, "q1", "m1", ann, "Ring all-reduce.", at))
    assert held.status == AnswerStatus.HELD
    await answers.record(ThreadReply(place, "q1", "m2", bob, "A parameter server.", at))
    await answers.withdraw(ReplyDeleted(place, "q1", "m2", at))  # Bob thinks better of it
    other = await answers.record(ThreadReply(place, "x9", "m3", bob, "chat", at))
    assert other.status == AnswerStatus.HELD  # kept for now; dropped if x9 never is a round's
    hold.set()
    await posting
    clock.set(START + timedelta(hours=17))
    await scheduler.tick()
    ((_, _, reveal),) = slow.reveals
    assert [m.name for m in reveal.on_time] == ["Ann"]
    clock.advance(timedelta(days=3))
    await scheduler.tick()
    async with app.db.transaction() as session:
        from prepbot.store.models import HeldReply

        assert (await session.scalars(select(HeldReply))).all() == []


async def test_a_database_that_fails_for_a_while_never_stops_scheduling(
    app: App, platform: RecordingPlatform, clock: ManualClock, database_url: str
):
    """A table briefly gone (a migration, a restore): ticks fail, are told, retried; none exits."""
    from sqlalchemy import text

    from prepbot.leadership import leadership_for
    from prepbot.scheduling import TICK_PROBLEM, run_scheduling

    await subscribe(app, "c", "09:00 UTC daily reveal=17:00")
    scheduler = RoundScheduler(app.services, safety_interval=timedelta(hours=1))
    stop = asyncio.Event()
    async with app.db.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE rounds RENAME TO rounds_away"))
    clock.set(START + timedelta(hours=9))
    loop = asyncio.ensure_future(
        run_scheduling(
            scheduler,
            leadership_for(database_url),
            stop,
            poll=timedelta(seconds=0.02),
            max_backoff=timedelta(seconds=0.1),
        )
    )
    try:
        metrics = app.services.ctx.metrics
        while metrics.tick_failures._value.get() < 3:
            assert not loop.done(), loop
            await asyncio.sleep(0.02)
        (problem,) = app.services.ctx.problems.current("scheduler")
        assert problem.key == TICK_PROBLEM
        assert "scheduling failed" in problem.message
        assert "retrying" in problem.message
        async with app.db.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE rounds_away RENAME TO rounds"))
        for _ in range(500):
            if platform.questions and not app.services.ctx.problems.current():
                break
            await asyncio.sleep(0.02)
        assert len(platform.questions) == 1
        assert app.services.ctx.problems.current() == []  # told it works again
        assert not loop.done()
    finally:
        stop.set()
        await loop


async def test_a_group_whose_time_zone_no_longer_exists_is_skipped_and_reported(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    good = await subscribe(app, "good", "09:00 UTC daily reveal=17:00")
    bad = await subscribe(app, "bad", "09:00 UTC daily reveal=17:00")
    async with app.db.transaction() as session:
        stored = await session.get(Subscription, bad.id)
        assert stored is not None
        stored.timezone = "Atlantis/Lost_City"  # a zone a tzdata update no longer has
    scheduler = RoundScheduler(app.services)
    await scheduler.start_jobs()  # every start used to crash here
    try:
        assert f"post:{good.id}" in scheduler.job_ids()
        assert f"post:{bad.id}" not in scheduler.job_ids()
        clock.set(START + timedelta(hours=9))
        report = await scheduler.tick()
    finally:
        scheduler.stop_jobs()
    assert report.posted == [(good.id, START.date())]
    assert [channel for channel, _ in platform.questions] == ["good"]
    (problem,) = app.services.ctx.problems.current()
    assert problem.key == f"subscription:{bad.id}:schedule"
    assert "#bad" in problem.message
    assert "Atlantis/Lost_City" in problem.message
    assert "/prep schedule" in problem.message


async def test_an_admin_mends_a_group_whose_time_zone_no_longer_exists(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    bad = await subscribe(app, "bad", "09:00 UTC daily reveal=17:00")
    async with app.db.transaction() as session:
        stored = await session.get(Subscription, bad.id)
        assert stored is not None
        stored.timezone = "Atlantis/Lost_City"
    commands = app.services.commands

    async def says(text: str) -> str:
        response = await commands.handle(admin_says(text, "bad"))
        return " ".join(str(v) for v in response.views)

    assert "give it a time zone" in (await says("schedule 10:00")).lower()
    assert "Atlantis/Lost_City" in await says("status")
    assert "Schedule updated" in await says("schedule Europe/London")
    clock.set(START + timedelta(hours=9, minutes=5))  # 09:05 in London, in March
    report = await RoundScheduler(app.services).tick()
    assert report.posted == [(bad.id, START.date())]
