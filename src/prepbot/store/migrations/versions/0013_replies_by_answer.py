"""Index replies by their answer, so joining an answer's text reads only its own replies.

Storing a reply joins its answer's text from the answer's replies, and withdrawing one counts
what is left; both look replies up by ``answer_id``, which no index covered. Every batch of
answers then read the whole ``replies`` table, a cost that grew with every round's history.
Building the index takes a lock that holds writes to ``replies`` for as long as the build
runs (seconds for millions of rows), once, while prepbot starts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index("ix_replies_answer_id", "replies", ["answer_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_replies_answer_id", table_name="replies")
