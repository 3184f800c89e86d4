"""Remember which round told a group its rotation is running out; fold two retired topics.

``rounds.rotation_left`` is set on the one round per cycle whose post warned the channel that
fewer than five unused scenarios remained (the number left after it); replaying the post shows
the same warning, and no other round repeats it. The built-in topic vocabulary, rewritten for
the whole interview map, folds ``federated-learning`` into ``privacy`` and drops the unused
``nlp`` for ``llm``; study groups filtered by the old ids move to the new ones.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prepbot.store.topic_renames import rename_topics

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETIRED_TOPICS = {"federated-learning": "privacy", "nlp": "llm"}


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("rotation_left", sa.Integer(), nullable=True))
    rename_topics(RETIRED_TOPICS)


def downgrade() -> None:
    """Revert this revision (the retired topic ids stay folded)."""
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("rotation_left")
