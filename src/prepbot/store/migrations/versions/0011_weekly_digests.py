"""Post each study group a weekly digest, once, when the admin wants it.

``subscriptions.digest`` says when: ``auto`` (after the reveal of the week's last round, the
default), ``off``, or a weekday and local time such as ``fri-17:00``. ``digests`` holds one
row per group and week, claimed before the digest is posted and completed with its message
id after, so a digest is posted once even when several processes tick or one dies midway.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("digest", sa.String(16), nullable=False, server_default="auto"))
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_digests_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
        sa.UniqueConstraint(
            "subscription_id", "period_end", name=op.f("uq_digests_subscription_id")
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("digests")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("digest")
