"""Reveal and read benchmarks: a round with many answers revealed; leaderboards and streaks read.

Run: python3 benchmarks/reveal_and_reads.py [--database sqlite|postgresql|both]
       [--answers 10000] [--members 200000] [--history 2000000] [--groups 20] [--days 100]
       [--write docs/benchmarks.md]
Each figure is set beside a baseline measured in the same run on the same database (one
``SELECT 1`` transaction), so a busy machine moves both. PostgreSQL comes from
$TEST_POSTGRES_URL (a throw-away database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import RecordingPlatform

from benchmarks.databases import throwaway_postgres
from benchmarks.report import machine, write_section
from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Period, ScheduleChange
from prepbot.core.events import Place
from prepbot.core.views import MemberRef
from prepbot.services import tallies
from prepbot.settings import Settings
from prepbot.store.models import Answer, Member, Round

DAY = date(2026, 6, 30)  # the end of a month: "this month" holds 29 days of history


async def baseline(app: App, runs: int = 50) -> float:
    """Return the median time of one trivial transaction, in seconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        async with app.db.transaction() as session:
            await session.execute(text("SELECT 1"))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def seed(app: App, members: int, groups: int, days: int, history: int) -> list[int]:
    """Create study groups (one community each) with past rounds and answers in bulk SQL.

    The members are split evenly over the groups' communities, and each group gets the same
    share of the answers, spread over ``days`` revealed rounds; returns the groups' ids.
    """
    per_group = members // groups
    per_day = min(history // (groups * days), per_group)
    ids = []
    for number in range(groups):
        place = Place("fake", f"T{number + 1}", f"C{number + 1}")
        group = await app.services.admin.subscribe(place, ScheduleChange())
        ids.append(group.id)
        async with app.db.transaction() as session:
            first = int(await session.scalar(select(func.coalesce(func.max(Member.id), 0))) or 0)
            await session.execute(
                text(_members_sql(app, per_group)), {"community": group.community_id}
            )
            for day in range(days):
                await _seed_round(app, session, group.id, day, days, first, per_group, per_day)
            await session.execute(
                text(
                    "INSERT INTO member_stats (subscription_id, member_id, on_time, "
                    "current_streak, best_streak) SELECT :group, a.member_id, count(*), 1, 1 "
                    "FROM answers a JOIN rounds r ON r.id = a.round_id "
                    "WHERE r.subscription_id = :group GROUP BY a.member_id"
                ),
                {"group": group.id},
            )
            await session.execute(  # every past on-time answer was graded at its reveal
                text(
                    "INSERT INTO answer_grades (answer_id, round_id, subscription_id, member_id, "
                    "covered, missed, red_flags, points, stuffed, graded_by, graded_at, "
                    "text_hash, feedback) SELECT a.id, a.round_id, :group, a.member_id, '[]', "
                    "'[]', '[]', a.member_id % 5, false, 'rubric', a.first_reply_at, '', 'sent' "
                    "FROM answers a JOIN rounds r ON r.id = a.round_id "
                    "WHERE r.subscription_id = :group"
                ),
                {"group": group.id},
            )
            await session.execute(
                text(
                    "UPDATE answers SET points = member_id % 5 WHERE round_id IN "
                    "(SELECT id FROM rounds WHERE subscription_id = :group)"
                ),
                {"group": group.id},
            )
    async with app.db.transaction() as session:  # rows written directly: count them up
        await tallies.recount(session, app.db.dialect)  # as `prepbot db recount` does
    async with app.db.transaction() as session:  # what autovacuum does after a bulk load
        await session.execute(text("ANALYZE"))
    return ids


async def _seed_round(
    app: App,
    session: AsyncSession,
    group_id: int,
    day: int,
    days: int,
    first_member: int,
    per_group: int,
    per_day: int,
) -> None:
    """Insert one revealed past round of a group and ``per_day`` on-time answers to it."""
    local = DAY - timedelta(days=days - day)
    moment = datetime.combine(local, datetime.min.time(), UTC)
    round_id = await session.scalar(
        insert(Round)
        .values(
            subscription_id=group_id,
            local_date=local,
            scenario_id="apple-calibration-equal-accuracy",
            cycle=0,
            status="revealed",
            question_message_id=f"q{group_id}-{day}",
            claimed_at=moment,
            posted_at=moment,
            reveal_due_at=moment,
            revealed_at=moment,
            reveal_message_id=f"r{group_id}-{day}",
        )
        .returning(Round.id)
    )
    offset = first_member + (day * per_day) % max(per_group - per_day, 1)
    await session.execute(
        text(
            "INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, "
            "updated_at) SELECT :round, m.id, :yes, 'answer', :at, :at FROM members m "
            "WHERE m.id > :offset AND m.id <= :offset + :count"
        ),
        {
            "round": round_id,
            "yes": True,
            "at": moment.replace(tzinfo=None) if app.db.is_sqlite else moment,
            "offset": offset,
            "count": per_day,
        },
    )


def _members_sql(app: App, count: int) -> str:
    """Return SQL that inserts ``count`` members U1…Un of a community in one statement."""
    columns = "INSERT INTO members (community_id, external_id, display_name) "
    values = "SELECT :community, 'U' || n, 'member ' || n "
    if app.db.is_sqlite:
        return (
            f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {count}) "
            + columns
            + values
            + "FROM c"
        )
    return columns + values + f"FROM generate_series(1, {count}) AS n"


REALISTIC_ANSWER = (
    "I would not pick on accuracy alone, since both models are right 88% of the time. The first "
    "model says 89% confidence and is right 88% of the time, so it is well calibrated; the "
    "second says 99% and is overconfident. I would check a reliability diagram and the expected "
    "calibration error on held-out data, and if I needed the second one I would fix it with "
    "temperature scaling on a validation set. Downstream decisions use the confidence, so the "
    "calibrated model is the safer choice. Answer from member "
)


async def bench_reveal(app: App, group_id: int, answers: int, *, pregraded: bool) -> float:
    """Post a round, record ``answers`` of the group's members' answers, time its reveal.

    Each answer is about 80 words of a real answer to the round's scenario (with the member's
    number in it, so no two are the same): the reveal grades every one against the rubric.
    """
    outcome = await app.services.rounds.post_round(group_id, DAY)
    assert outcome is not None
    round_id = outcome.round.id
    async with app.db.transaction() as session:
        await session.execute(  # the scenario the answers are written for
            text("UPDATE rounds SET scenario_id = :scenario WHERE id = :round"),
            {"scenario": "apple-calibration-equal-accuracy", "round": round_id},
        )
        await session.execute(
            text(
                "INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, "
                "updated_at) SELECT :round, m.id, :yes, :answer || m.id, :at, :at FROM members m "
                "JOIN subscriptions s ON s.community_id = m.community_id "
                "WHERE s.id = :group ORDER BY m.id LIMIT :count"
            ),
            {
                "answer": REALISTIC_ANSWER,
                "round": round_id,
                "yes": True,
                "at": datetime.now(UTC).replace(tzinfo=None)
                if app.db.is_sqlite
                else datetime.now(UTC),
                "count": answers,
                "group": group_id,
            },
        )
    if pregraded:  # as the answers service has them graded while they arrive during the day
        async with app.db.transaction() as session:
            ids = (
                await session.scalars(select(Answer.id).where(Answer.round_id == round_id))
            ).all()
        await app.services.rounds.feedback.pregrade(ids)
    start = time.perf_counter()
    card = await app.services.rounds.reveal_round(round_id)
    elapsed = time.perf_counter() - start
    assert card is not None
    assert len(card.on_time) == answers
    assert card.graded == answers  # every answer was graded within the timed reveal
    return elapsed


async def bench_reads(app: App, group_id: int, runs: int = 40) -> tuple[float, float]:
    """Return the p95 of /prep leaderboard month and /prep streak, in seconds."""
    async with app.db.transaction() as session:
        from prepbot.store.models import Subscription

        group = await session.get(Subscription, group_id)
    assert group is not None
    boards, streaks = [], []
    for n in range(runs):
        start = time.perf_counter()
        await app.services.queries.leaderboard([group], "#c1", Period.MONTH, DAY)
        boards.append(time.perf_counter() - start)
        start = time.perf_counter()
        who = MemberRef(f"U{n * 97 + 1}", f"member {n * 97 + 1}")
        await app.services.queries.streak(group, who)
        streaks.append(time.perf_counter() - start)
    return _p95(boards), _p95(streaks)


def _p95(samples: list[float]) -> float:
    return sorted(samples)[max(int(len(samples) * 0.95) - 1, 0)]


async def run_one(url: str, args: argparse.Namespace) -> list[str]:
    clock = ManualClock(datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(hours=9))
    app = await build_app(Settings.model_validate({"database": {"url": url}}), clock)
    app.services.ctx.platforms["fake"] = RecordingPlatform()
    try:
        started = time.perf_counter()
        group_ids = await seed(app, args.members, args.groups, args.days, args.history)
        group_id = group_ids[0]
        seeded = time.perf_counter() - started
        async with app.db.transaction() as session:
            stored = await session.scalar(select(func.count()).select_from(Answer))
            month = await session.scalar(
                select(func.count())
                .select_from(Answer)
                .join(Round, Round.id == Answer.round_id)
                .where(Round.subscription_id == group_id, Round.local_date >= DAY.replace(day=1))
            )
        base = await baseline(app)
        reveal = await bench_reveal(app, group_id, args.answers, pregraded=True)
        started = time.perf_counter()
        await app.services.rounds.feedback.settle()  # each member's feedback, in the background
        feedback = time.perf_counter() - started
        board, streak = await bench_reads(app, group_id)
        cold = None  # the worst case (one group) measures reads; the cold reveal needs a second
        if len(group_ids) > 1:
            cold = await bench_reveal(app, group_ids[1], args.answers, pregraded=False)
            await app.services.rounds.feedback.settle()
        name = app.db.dialect
        limit = 0.05 if name == "postgresql" else 0.1
        return [
            f"| {name} | baseline: one `SELECT 1` transaction | {base * 1e3:.2f} ms | — | — |",
            f"| {name} | reveal a round with {args.answers:,} answers of ~80 words, graded as "
            "they were stored (streaks updated, coverage counted) | "
            f"{reveal:.3f} s | {reveal / base:,.0f}x baseline | < 2 s |",
            f"| {name} | the same, every answer graded at the reveal (all stored at once, or "
            f"an LLM grader's fallback) | "
            + (f"{cold:.3f} s | {cold / base:,.0f}x baseline" if cold else "not measured | —")
            + " | — |",
            f"| {name} | then send those {args.answers:,} members their feedback (in the "
            f"background, to an in-memory platform: the database's share) | {feedback:.3f} s "
            "| — | — |",
            f"| {name} | `/prep leaderboard month`, p95 ({args.members:,} members and "
            f"{stored:,} answers in {args.groups} group{'s' if args.groups > 1 else ''}; "
            f"this month: {month:,} of them in the group read) | {board * 1e3:.1f} ms | "
            f"{board / base:,.0f}x | "
            f"< {limit * 1e3:.0f} ms |",
            f"| {name} | `/prep streak`, p95 | {streak * 1e3:.1f} ms | {streak / base:,.0f}x | "
            f"< {limit * 1e3:.0f} ms |",
            f"| {name} | (seeding the data) | {seeded:.1f} s | — | — |",
        ]
    finally:
        await app.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--answers", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=2_000_000)
    parser.add_argument(
        "--groups",
        type=int,
        default=20,
        help="Study groups (one community each) the members and answers are spread over; "
        "1 is the worst case, one group holding everything.",
    )
    parser.add_argument("--days", type=int, default=100, help="Days of revealed history.")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows: list[str] = []
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            rows += await run_one(f"sqlite:///{folder}/bench.db", args)
    if args.database in ("postgresql", "both"):
        async with throwaway_postgres() as url:
            rows += await run_one(url, args)
    command = " ".join(["python3", "benchmarks/reveal_and_reads.py", *sys.argv[1:]])
    heading = "Reveal and reads" if args.groups > 1 else "Reads, worst case: one study group"
    lines = [
        f"## {heading}",
        "",
        f"Command: `{command}` on {machine()}.",
        "",
        "| database | what | measured | relative | target |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, heading, lines)


if __name__ == "__main__":
    asyncio.run(main())
