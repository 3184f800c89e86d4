"""Grade on-time answers against their scenario's rubric; merge the four hiring-ish topics.

``answer_grades`` keeps, per on-time answer (and ``answers.points`` a copy of its points, so a
leaderboard needs no join), the key points it covered and missed, the red
flags it raised, its points and what became of the member's private feedback.
``member_preferences`` remembers a member who turned feedback messages off. The built-in
topic vocabulary merged ``career`` and ``interview-process`` into ``interview-prep``; study
groups filtered by the old ids are moved to the new one so their rotation keeps its content.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prepbot.store.topic_renames import rename_topics

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGED_TOPICS = {"career": "interview-prep", "interview-process": "interview-prep"}


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "answer_grades",
        sa.Column("answer_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("covered", sa.JSON(), nullable=False),
        sa.Column("missed", sa.JSON(), nullable=False),
        sa.Column("red_flags", sa.JSON(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("stuffed", sa.Boolean(), nullable=False),
        sa.Column("graded_by", sa.String(length=20), nullable=False),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_hash", sa.String(length=16), nullable=False),
        sa.Column("feedback", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["answer_id"],
            ["answers.id"],
            name=op.f("fk_answer_grades_answer_id_answers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["rounds.id"],
            name=op.f("fk_answer_grades_round_id_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_answer_grades_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_answer_grades_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("answer_id", name=op.f("pk_answer_grades")),
    )
    op.create_index(op.f("ix_answer_grades_round_id"), "answer_grades", ["round_id"])
    op.create_index(
        op.f("ix_answer_grades_subscription_member"),
        "answer_grades",
        ["subscription_id", "member_id"],
    )
    op.create_table(
        "member_preferences",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("feedback_messages", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_member_preferences_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_preferences")),
    )
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("points", sa.Integer(), nullable=False, server_default="0"))
    rename_topics(MERGED_TOPICS)


def downgrade() -> None:
    """Revert this revision (the merged topic ids stay merged: the old ones are gone)."""
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("points")
    op.drop_table("member_preferences")
    op.drop_index(op.f("ix_answer_grades_subscription_member"), table_name="answer_grades")
    op.drop_index(op.f("ix_answer_grades_round_id"), table_name="answer_grades")
    op.drop_table("answer_grades")
