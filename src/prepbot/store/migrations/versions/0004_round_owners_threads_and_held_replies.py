"""Give each round in flight a living owner, remember every thread of a round, hold early replies.

A claimed round (and a revealed round whose reveal is not sent yet) names the process working
on it and until when that process vouches for it (``claimed_by``, ``lease_until``): only a
round whose lease ran out is repaired. ``round_threads`` maps every thread the bot posted for
a round to it (a reply in any of them is that round's answer). ``held_replies`` keeps replies
that arrive in a thread the bot is still posting, until the thread is known.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "round_threads",
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_round_threads_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["rounds.id"],
            name=op.f("fk_round_threads_round_id_rounds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", "message_id", name=op.f("pk_round_threads")),
    )
    op.create_index(op.f("ix_round_threads_round_id"), "round_threads", ["round_id"])
    op.execute(
        "INSERT INTO round_threads (subscription_id, message_id, round_id) "
        "SELECT subscription_id, question_message_id, id FROM rounds "
        "WHERE question_message_id IS NOT NULL"
    )
    op.create_table(
        "held_replies",
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("member_external_id", sa.String(length=64), nullable=False),
        sa.Column("member_name", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_held_replies_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subscription_id", "thread_id", "message_id", name=op.f("pk_held_replies")
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("held_replies")
    op.drop_index(op.f("ix_round_threads_round_id"), table_name="round_threads")
    op.drop_table("round_threads")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
