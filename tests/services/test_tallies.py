"""Leaderboard tallies stay equal to a full recount from the answers, whatever happens."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Delete, delete, select

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Period
from prepbot.core.events import ReplyDeleted, ThreadReply
from prepbot.core.views import MemberRef
from prepbot.services import tallies
from prepbot.services.queries import LEADERBOARD_SIZE, period_start
from prepbot.settings import Settings
from prepbot.store.db import alembic_config
from prepbot.store.models import Answer, Member, MemberStats, MemberTally, Round, RoundStatus
from tests.fakes import RecordingPlatform
from tests.test_data_export import GROUPS, START, simulate_month


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


async def assert_tallies_match(app: App) -> None:
    """Check every stored tally equals the one summed from the answers."""
    async with app.db.transaction() as session:
        assert await tallies.stored(session) == await tallies.counted(session)


async def board_from_answers(
    app: App, subscription_id: int, period: Period, today: date
) -> list[tuple[str, int, int, int]]:
    """Rank a group from its answers directly: the rule the tallies must reproduce."""
    since = period_start(period, today)
    async with app.db.transaction() as session:
        rows = (
            await session.execute(
                select(Member.display_name, Answer.on_time, Answer.points, Answer.member_id)
                .join(Answer, Answer.member_id == Member.id)
                .join(Round, Round.id == Answer.round_id)
                .where(
                    Round.subscription_id == subscription_id,
                    Round.status == RoundStatus.REVEALED,
                    Round.local_date >= (since or date(1, 1, 1)),
                )
            )
        ).all()
        streaks = dict(
            (
                await session.execute(
                    select(MemberStats.member_id, MemberStats.current_streak).where(
                        MemberStats.subscription_id == subscription_id
                    )
                )
            ).all()
        )
    totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for name, on_time, points, member_id in rows:
        total = totals[(name, member_id)]
        total[0 if on_time else 1] += 1
        total[2] += points
    ranked = sorted(
        (
            (-t[0], -t[2], -streaks.get(member_id, 0), -t[1], name.lower(), name)
            for (name, member_id), t in totals.items()
        )
    )[:LEADERBOARD_SIZE]
    return [(key[-1], -key[0], -key[3], -key[1]) for key in ranked]


async def test_a_month_of_rounds_late_answers_and_regrades_keeps_the_tallies_exact(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    await assert_tallies_match(app)
    today = START + timedelta(days=29)
    for where in GROUPS:
        group = await app.services.admin.subscription(where)
        assert group is not None
        for period in Period:
            board = await app.services.queries.leaderboard([group], "#g", period, today)
            shown = [(r.member.name, r.on_time, r.late, r.points) for r in board.rows]
            assert shown == await board_from_answers(app, group.id, period, today), period
    # A late answer taken back, and a member erased, move the tallies with them.
    group = await app.services.admin.subscription(GROUPS[1])
    assert group is not None
    async with app.db.transaction() as session:
        late = (
            await session.execute(
                select(Round.question_message_id)
                .join(Answer, Answer.round_id == Round.id)
                .where(Round.subscription_id == group.id, Answer.on_time.is_(False))
                .limit(1)
            )
        ).scalar_one()
    assert late is not None
    outcome = await app.services.answers.withdraw(
        ReplyDeleted(GROUPS[1], late, f"{late}-late", clock.now())
    )
    assert outcome.status == "removed"
    await assert_tallies_match(app)
    assert (await app.services.privacy.forget(GROUPS[0], "bob")).found
    await assert_tallies_match(app)


async def test_a_late_answer_counts_once_even_when_delivered_twice(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    group = await app.services.admin.subscription(GROUPS[0])
    assert group is not None
    async with app.db.transaction() as session:
        thread = await session.scalar(
            select(Round.question_message_id)
            .where(Round.subscription_id == group.id)
            .order_by(Round.local_date)
            .limit(1)
        )
    assert thread is not None
    reply = ThreadReply(
        GROUPS[0], thread, "again-1", MemberRef("zed", "Zed"), "Late too.", clock.now()
    )
    await app.services.answers.record(reply)
    await app.services.answers.record(reply)  # Slack's retry of the same event
    await assert_tallies_match(app)
    board = await app.services.queries.leaderboard([group], "#g", Period.ALL, START)
    assert [(r.member.name, r.late) for r in board.rows if r.member.name == "Zed"] == [("Zed", 1)]


async def test_recount_repairs_tallies_and_says_how_many_were_off(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    async with app.db.transaction() as session:
        await session.execute(tallies_delete_some())
    async with app.db.transaction() as session:
        assert await tallies.recount(session, app.db.dialect) > 0
    await assert_tallies_match(app)
    async with app.db.transaction() as session:
        assert await tallies.recount(session, app.db.dialect) == 0


async def test_the_migration_fills_the_tallies_from_answers_already_stored(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    async with app.db.transaction() as session:
        before = await tallies.stored(session)
    async with app.db.engine.begin() as connection:  # a database from before the tallies…
        await connection.run_sync(downgrade_to, "0011")
    await app.db.upgrade()  # …upgraded: the revision counts what was there
    async with app.db.transaction() as session:
        assert await tallies.stored(session) == before


def tallies_delete_some() -> Delete:
    return delete(MemberTally).where(MemberTally.period == tallies.MONTH)


def downgrade_to(connection: Connection, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


async def test_prepbot_db_recount_fixes_tallies_and_says_so(tmp_path: Path, clock: ManualClock):
    url = f"sqlite:///{tmp_path / 'prepbot.db'}"
    built = await build_app(Settings.model_validate({"database": {"url": url}}), clock)
    built.services.ctx.platforms["fake"] = RecordingPlatform()
    try:
        await simulate_month(built, clock)
        async with built.db.transaction() as session:
            await session.execute(tallies_delete_some())
    finally:
        await built.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = url

    def recount() -> str:
        done = subprocess.run(
            ["prepbot", "db", "recount"], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = recount()
    assert first.startswith("tallies recounted from the answers: ")
    assert first.rstrip().endswith("were off and are fixed")
    assert recount() == "tallies recounted from the answers: all matched\n"
