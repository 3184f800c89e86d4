"""Give each study group the secret of its web archive link.

``subscriptions.archive_token`` is the unguessable part of ``/archive/<token>``, made by the
first ``/prep archive`` in the group and replaced by ``/prep archive rotate``; no two groups
share one. None until then: a group nobody asked a link for has no archive on the web.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("archive_token", sa.String(64), nullable=True))
        batch.create_unique_constraint(op.f("uq_subscriptions_archive_token"), ["archive_token"])


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint(op.f("uq_subscriptions_archive_token"), type_="unique")
        batch.drop_column("archive_token")
