"""Keep each member's leaderboard tallies per group and period, so boards read few rows.

``member_tallies`` holds, per study group, member and period (the week, the month, all
time), the on-time and late answers and key points of revealed rounds; the services move it
in the transactions that change it. This revision creates it and fills it from the answers
already stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALL_TIME = date(2000, 1, 1)


def upgrade() -> None:
    """Apply this revision."""
    tallies = op.create_table(
        "member_tallies",
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(5), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_member_tallies_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_member_tallies_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subscription_id", "period", "period_start", "member_id", name=op.f("pk_member_tallies")
        ),
    )
    op.create_index(
        "ix_member_tallies_rank",
        "member_tallies",
        ["subscription_id", "period", "period_start", "on_time", "points"],
    )
    assert tallies is not None
    _fill(tallies)


def _fill(tallies: sa.Table) -> None:
    """Sum the answers to revealed rounds already stored into their periods."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT r.subscription_id, a.member_id, r.local_date, a.on_time, a.points "
            "FROM answers a JOIN rounds r ON r.id = a.round_id WHERE r.status = 'revealed'"
        )
    )
    totals: dict[tuple[int, int, str, date], list[int]] = {}
    for subscription_id, member_id, day, on_time, points in rows:
        if isinstance(day, str):  # SQLite hands dates back as text here
            day = date.fromisoformat(day)
        for period, start in (
            ("week", day - timedelta(days=day.weekday())),
            ("month", day.replace(day=1)),
            ("all", ALL_TIME),
        ):
            total = totals.setdefault((subscription_id, member_id, period, start), [0, 0, 0])
            total[0 if on_time else 1] += 1
            total[2] += points or 0
    values = [
        {
            "subscription_id": s,
            "member_id": m,
            "period": p,
            "period_start": d,
            "on_time": c[0],
            "late": c[1],
            "points": c[2],
        }
        for (s, m, p, d), c in totals.items()
    ]
    for start in range(0, len(values), 5_000):
        op.bulk_insert(tallies, values[start : start + 5_000])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_member_tallies_rank", table_name="member_tallies")
    op.drop_table("member_tallies")
