"""Let a study group answer privately until the reveal.

``subscriptions.answer_mode`` is ``thread`` (answers are replies in the question's thread, as
before) or ``private`` (answers come from a modal or ``/prep answer`` and are published at the
reveal). Private answers are stored as replies whose message id is ``private:`` and the
submission's id, so the reply tables' replay and withdrawal rules cover them too.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(
            sa.Column("answer_mode", sa.String(10), nullable=False, server_default="thread")
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("answer_mode")
