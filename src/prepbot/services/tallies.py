"""Leaderboard tallies: each member's on-time and late answers and key points per period.

A member's row per study group and period (the week and the month a round's local date falls
in, and all time) is moved in the same transaction as what changes it: the reveal (its
on-time answers and their points), a late answer stored or removed, a grade whose points
changed after the reveal, a member erased. A leaderboard then reads at most the rows it shows
plus an index range, however long the group's history. ``recount`` rebuilds every tally from
the answers (``prepbot db recount``) and says what differed. Imports no chat platform library.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Integer, delete, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.services.base import insert_ignore
from prepbot.store.models import Answer, MemberTally, Round, RoundStatus

WEEK, MONTH, ALL = "week", "month", "all"
ALL_TIME = date(2000, 1, 1)  # the period start of the all-time tallies
Key = tuple[int, int, str, date]  # (subscription, member, period, period start)
Counts = tuple[int, int, int]  # (on time, late, points)


def periods_of(day: date) -> list[tuple[str, date]]:
    """Return the periods a round's local date counts in: its week, its month, all time."""
    return [
        (WEEK, day - timedelta(days=day.weekday())),
        (MONTH, day.replace(day=1)),
        (ALL, ALL_TIME),
    ]


async def add(
    session: AsyncSession, dialect: str, subscription_id: int, day: date, counts: Any
) -> None:
    """Add per-member counts (a select of member_id, on_time, late, points) to a round's periods.

    One INSERT … SELECT … ON CONFLICT DO UPDATE per period: no statement carries a parameter
    per member, so a round of any size fits the databases' parameter limits.
    """
    source = counts.subquery()
    for period, start in periods_of(day):
        insert = insert_ignore(dialect, MemberTally).from_select(
            ["subscription_id", "member_id", "period", "period_start", "on_time", "late", "points"],
            select(
                literal(subscription_id, Integer),
                source.c.member_id,
                literal(period),
                literal(start),
                source.c.on_time,
                source.c.late,
                source.c.points,
            ).where(literal(True)),  # SQLite: an ON CONFLICT after a SELECT needs its WHERE
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["subscription_id", "period", "period_start", "member_id"],
                set_={
                    "on_time": MemberTally.on_time + insert.excluded.on_time,
                    "late": MemberTally.late + insert.excluded.late,
                    "points": MemberTally.points + insert.excluded.points,
                },
            )
        )


async def add_rows(
    session: AsyncSession, dialect: str, changes: Iterable[tuple[int, int, date, Counts]]
) -> None:
    """Add (subscription, member, round date, counts) changes, a few at a time, to the tallies."""
    merged: dict[Key, list[int]] = {}
    for subscription_id, member_id, day, counts in changes:
        for period, start in periods_of(day):
            total = merged.setdefault((subscription_id, member_id, period, start), [0, 0, 0])
            for index, value in enumerate(counts):
                total[index] += value
    rows = [_row(key, counts) for key, counts in sorted(merged.items()) if any(counts)]
    if not rows:
        return
    insert = insert_ignore(dialect, MemberTally)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["subscription_id", "period", "period_start", "member_id"],
            set_={
                "on_time": MemberTally.on_time + insert.excluded.on_time,
                "late": MemberTally.late + insert.excluded.late,
                "points": MemberTally.points + insert.excluded.points,
            },
        ),
        rows,
    )


async def counted(session: AsyncSession) -> dict[Key, Counts]:
    """Return every tally as it should be: summed from the answers to revealed rounds."""
    rows = await session.stream(
        select(
            Round.subscription_id,
            Answer.member_id,
            Round.local_date,
            Answer.on_time,
            Answer.points,
        )
        .join(Round, Round.id == Answer.round_id)
        .where(Round.status == RoundStatus.REVEALED)
        .execution_options(yield_per=10_000)
    )
    totals: dict[Key, list[int]] = {}
    async for subscription_id, member_id, day, on_time, points in rows:
        for period, start in periods_of(day):
            total = totals.setdefault((subscription_id, member_id, period, start), [0, 0, 0])
            total[0 if on_time else 1] += 1
            total[2] += points or 0
    return {key: (c[0], c[1], c[2]) for key, c in totals.items()}


async def stored(session: AsyncSession) -> dict[Key, Counts]:
    """Return every tally as stored (rows that count nothing left out)."""
    rows = await session.execute(
        select(
            MemberTally.subscription_id,
            MemberTally.member_id,
            MemberTally.period,
            MemberTally.period_start,
            MemberTally.on_time,
            MemberTally.late,
            MemberTally.points,
        )
    )
    return {
        (s, m, p, d): (on_time, late, points)
        for s, m, p, d, on_time, late, points in rows.all()
        if on_time or late or points
    }


async def recount(session: AsyncSession, dialect: str) -> int:
    """Rebuild every tally from the answers; return how many stored tallies were wrong.

    On PostgreSQL the tallies are locked against writers first, so a reveal or late answer
    committed meanwhile is either already in the answers read here or waits for this.
    """
    if dialect == "postgresql":
        await session.execute(text("LOCK TABLE member_tallies IN EXCLUSIVE MODE"))
    wanted = await counted(session)
    have = await stored(session)
    wrong = sum(1 for key in wanted.keys() | have.keys() if wanted.get(key) != have.get(key))
    await session.execute(delete(MemberTally))
    rows = [_row(key, counts) for key, counts in sorted(wanted.items())]
    for start in range(0, len(rows), 5_000):
        await session.execute(insert_ignore(dialect, MemberTally), rows[start : start + 5_000])
    return wrong


def _row(key: Key, counts: Sequence[int]) -> dict[str, Any]:
    """Return a tally's row from its key and (on time, late, points)."""
    subscription_id, member_id, period, start = key
    return {
        "subscription_id": subscription_id,
        "member_id": member_id,
        "period": period,
        "period_start": start,
        "on_time": counts[0],
        "late": counts[1],
        "points": counts[2],
    }
