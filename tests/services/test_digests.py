"""Weekly digests: posted once per group and week, after the week's last reveal, with a picture."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from io import BytesIO
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import CommandError, parse_prep
from prepbot.core.digests import AUTO, due_weeks, parse_digest
from prepbot.core.events import Invocation, Place, ThreadReply
from prepbot.core.schedule import Schedule, ScheduleError
from prepbot.core.text import digest_lines, render_text
from prepbot.core.views import MemberRef, StatusView
from prepbot.scheduling import RoundScheduler
from prepbot.store.models import Digest, Round
from tests.fakes import RecordingPlatform

MONDAY = date(2026, 11, 2)
GROUPS = (Place("fake", "T1", "C-ML", "Acme", "ml"), Place("fake", "T2", "C-SYS", "Beta", "sys"))
MEMBERS = ("ada", "bob", "cy")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


def admin(where: Place, text: str) -> Invocation:
    return Invocation(where, MemberRef("root", "Root"), True, text)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def play_week(
    app: App, clock: ManualClock, scheduler: RoundScheduler, *, days: int = 5
) -> list[tuple[int, date]]:
    """Tick through a week of 09:00 posts and 17:00 reveals; members answer; return digests."""
    posted: list[tuple[int, date]] = []
    for offset in range(days):
        day = MONDAY + timedelta(days=offset)
        clock.set(at(day, 9, 0))
        report = await scheduler.tick()
        posted += report.digests
        for where in GROUPS:
            group = await app.services.admin.subscription(where)
            assert group is not None
            round_ = await _round_of(app, group.id, day)
            assert round_ is not None, (where, day)
            assert round_.question_message_id, (where, day)
            thread = round_.question_message_id
            scenario = app.services.ctx.catalog.get(round_.scenario_id)
            assert scenario is not None
            assert scenario.rubric is not None
            made = scenario.rubric.key_points[0].point  # Ada makes the first key point
            for number, who in enumerate(MEMBERS):
                if who == "cy" and offset % 2:  # cy misses every other day
                    continue
                clock.set(at(day, 10, number))
                await app.services.answers.record(
                    ThreadReply(
                        where,
                        thread,
                        f"{thread}-{who}",
                        MemberRef(who, who.title()),
                        made if who == "ada" else f"{who}: I would need to think about it.",
                        clock.now(),
                    )
                )
        clock.set(at(day, 17, 0))
        report = await scheduler.tick()
        posted += report.digests
    await app.services.rounds.feedback.close()
    return posted


async def _round_of(app: App, subscription_id: int, day: date) -> Round | None:
    async with app.services.ctx.db.transaction() as session:
        return await session.scalar(
            select(Round).where(Round.subscription_id == subscription_id, Round.local_date == day)
        )


async def subscribe_both(app: App, extra: str = "") -> None:
    for where in GROUPS:
        response = await app.services.commands.handle(
            admin(where, f"subscribe 09:00 UTC mon-fri reveal=17:00 {extra}".strip())
        )
        assert "⚠" not in render_text(response.views[0]), response


async def test_a_simulated_week_posts_one_digest_per_group_after_the_last_reveal(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app)
    scheduler = RoundScheduler(app.services)
    posted = await play_week(app, clock, scheduler)

    assert len(platform.digests) == 2  # one per group, both on Friday at 17:00
    assert sorted(channel for channel, _, _ in platform.digests) == ["C-ML", "C-SYS"]
    assert {day for _, day in posted} == {MONDAY + timedelta(days=6)}
    _channel, card, picture = platform.digests[0]
    assert (card.period_start, card.period_end) == (MONDAY, MONDAY + timedelta(days=6))
    assert [r.local_date for r in card.rounds] == [MONDAY + timedelta(days=i) for i in range(5)]
    assert [(r.on_time, r.late) for r in card.rounds] == [(3, 0), (2, 0), (3, 0), (2, 0), (3, 0)]
    assert card.answers == 13
    assert card.members == 3
    assert [row.member.name for row in card.leaders] == ["Ada", "Bob", "Cy"]
    assert card.leaders[0].on_time == 5
    assert card.leaders[2].on_time == 3
    assert {(m.member.name, m.streak) for m in card.milestones} == {("Ada", 5), ("Bob", 5)}
    assert card.most_covered
    assert card.least_covered
    assert all(point.made for point in card.most_covered)  # the points Ada made
    assert card.most_covered[0].share > card.least_covered[0].share == 0
    assert card.leaders[0].points >= 5  # Ada's key points
    assert len(card.calendar) == 5
    assert card.calendar[0] == (MONDAY, 3)
    # The picture is a real PNG the platform uploads with the digest.
    assert picture is not None
    assert picture.startswith(b"\x89PNG")
    image = Image.open(BytesIO(picture))
    assert image.format == "PNG"
    assert image.width >= 800
    assert image.height >= 300
    text = "\n".join(digest_lines(card))
    assert "13 answers from 3 members across 5 questions." in text
    assert "1. Ada — 5 on time" in text

    # Later ticks, and a second scheduler (a replica), post nothing more.
    clock.advance(timedelta(hours=3))
    assert (await scheduler.tick()).digests == []
    assert (await RoundScheduler(app.services).tick()).digests == []
    assert len(platform.digests) == 2
    async with app.services.ctx.db.transaction() as session:
        rows = (await session.scalars(select(Digest))).all()
    assert sorted(row.message_id or "" for row in rows) == ["d1", "d2"]


async def test_no_digest_before_the_weeks_last_reveal_nor_for_a_group_that_turned_it_off(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app)
    await app.services.commands.handle(admin(GROUPS[1], "schedule digest=off"))
    scheduler = RoundScheduler(app.services)
    await play_week(app, clock, scheduler, days=4)  # up to Thursday's reveal
    assert platform.digests == []
    clock.set(at(MONDAY + timedelta(days=4), 9))
    await scheduler.tick()
    clock.set(at(MONDAY + timedelta(days=4), 16, 59))
    assert (await scheduler.tick()).digests == []
    clock.set(at(MONDAY + timedelta(days=4), 17, 0))
    assert len((await scheduler.tick()).digests) == 1
    assert [channel for channel, _, _ in platform.digests] == ["C-ML"]


async def test_a_digest_moved_to_monday_morning_sums_up_the_seven_days_before(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app, "digest=mon-08:30")
    scheduler = RoundScheduler(app.services)
    await play_week(app, clock, scheduler)
    assert platform.digests == []  # not on Friday: the admin moved it
    next_monday = MONDAY + timedelta(days=7)
    clock.set(at(next_monday, 8, 29))
    assert (await scheduler.tick()).digests == []
    clock.set(at(next_monday, 8, 30))
    assert len((await scheduler.tick()).digests) == 2
    card = platform.digests[0][1]
    assert (card.period_start, card.period_end) == (MONDAY, MONDAY + timedelta(days=6))
    assert len(card.rounds) == 5


async def test_a_digest_whose_answer_was_lost_is_found_not_posted_again(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app)
    lease_clock = ManualClock(datetime(2026, 11, 1, tzinfo=UTC))
    app.services.ctx.lease_clock = lease_clock
    scheduler = RoundScheduler(app.services)
    await play_week(app, clock, scheduler, days=4)
    clock.set(at(MONDAY + timedelta(days=4), 9))
    await scheduler.tick()
    post_digest = platform.post_digest

    async def made_but_lost(*args: Any, **kwargs: Any) -> str:
        await post_digest(*args, **kwargs)
        raise TimeoutError("the platform made the digest but its answer was lost")

    platform.post_digest = made_but_lost  # type: ignore[method-assign]
    clock.set(at(MONDAY + timedelta(days=4), 17))
    assert (await scheduler.tick()).digests == []
    assert len(platform.digests) == 2
    clock.advance(timedelta(minutes=1))
    assert (await scheduler.tick()).digests == []  # their leases still run: nothing repaired
    platform.post_digest = post_digest  # type: ignore[method-assign]
    lease_clock.advance(app.services.ctx.lease + timedelta(seconds=1))
    await scheduler.tick()
    assert len(platform.digests) == 2  # found by the repair, not posted again
    async with app.services.ctx.db.transaction() as session:
        rows = (await session.scalars(select(Digest))).all()
    assert sorted(row.message_id or "" for row in rows) == ["d1", "d2"]


async def test_a_digest_to_a_channel_that_is_gone_pauses_the_group_and_the_others_go_on(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app)
    scheduler = RoundScheduler(app.services)
    await play_week(app, clock, scheduler, days=4)
    clock.set(at(MONDAY + timedelta(days=4), 9))
    await scheduler.tick()
    platform.gone["C-ML"] = "channel_not_found"
    clock.set(at(MONDAY + timedelta(days=4), 17))
    await scheduler.tick()
    assert [channel for channel, _, _ in platform.digests] == ["C-SYS"]
    group = await app.services.admin.subscription(GROUPS[0])
    assert group is not None
    assert group.paused
    assert group.paused_reason == "channel_not_found"


async def test_admins_see_and_change_the_digest_setting(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await subscribe_both(app)
    status = await app.services.commands.handle(admin(GROUPS[0], "status"))
    view = status.views[0]
    assert isinstance(view, StatusView)
    assert view.digest == AUTO
    assert "Weekly digest: weekly, after the reveal of the week's last question" in render_text(
        view
    )
    await app.services.commands.handle(admin(GROUPS[0], "schedule digest=Friday@16:00"))
    group = await app.services.admin.subscription(GROUPS[0])
    assert group is not None
    assert group.digest == "fri-16:00"
    shown = render_text((await app.services.commands.handle(admin(GROUPS[0], "status"))).views[0])
    assert "Weekly digest: weekly, Fridays at 16:00" in shown
    with pytest.raises(CommandError, match="is not a digest time"):
        parse_prep("schedule digest=someday")
    other = await app.services.admin.subscription(GROUPS[1])
    assert other is not None
    assert other.digest == AUTO


def test_digest_settings_read_the_way_admins_type_them():
    assert parse_digest("AUTO") == "auto"
    assert parse_digest("off") == "off"
    assert parse_digest("fri-17:00") == parse_digest("friday@17:00") == "fri-17:00"
    assert parse_digest("mon-9:05") == "mon-09:05"
    for wrong in ("fri", "17:00", "fri-25:00", "someday-10:00", ""):
        with pytest.raises(ScheduleError):
            parse_digest(wrong)


def test_an_auto_digest_is_due_at_the_reveal_of_the_weeks_last_scheduled_day():
    schedule = Schedule(timezone="Asia/Kolkata", weekdays=frozenset({0, 2, 4}))  # mon,wed,fri
    friday_reveal = datetime(2026, 11, 6, 17, 0) - timedelta(hours=5, minutes=30)
    before = due_weeks(AUTO, schedule, friday_reveal.replace(tzinfo=UTC) - timedelta(minutes=1))
    assert [week.end for week in before] == [date(2026, 11, 1)]  # only last week's
    weeks = due_weeks(AUTO, schedule, friday_reveal.replace(tzinfo=UTC))
    assert weeks[-1].start == date(2026, 11, 2)
    assert weeks[-1].end == date(2026, 11, 8)
    assert weeks[-1].due == friday_reveal.replace(tzinfo=UTC)
