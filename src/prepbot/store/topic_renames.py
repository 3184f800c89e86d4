"""Rewrite study groups' topic filters when the built-in topic vocabulary merges or drops ids.

Used by migrations only (they run inside Alembic's ``op`` context). Imports SQLAlchemy and
Alembic; nothing of the services or platforms.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op


def rename_topics(renames: dict[str, str]) -> None:
    """Rewrite subscriptions' topic filters, keeping each topic once and in order."""
    bind = op.get_bind()
    subscriptions = sa.table(
        "subscriptions", sa.column("id", sa.Integer), sa.column("topics", sa.JSON)
    )
    for row_id, raw in bind.execute(sa.select(subscriptions.c.id, subscriptions.c.topics)).all():
        topics = json.loads(raw) if isinstance(raw, str) else (raw or [])
        renamed: list[str] = []
        for topic in topics:
            new = renames.get(topic, topic)
            if new not in renamed:
                renamed.append(new)
        if renamed != topics:
            bind.execute(
                subscriptions.update().where(subscriptions.c.id == row_id).values(topics=renamed)
            )
