"""The shipped migrations create exactly the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from prepbot.store.db import Database, alembic_config
from prepbot.store.models import Base


async def test_migrations_match_the_models(database_url: str):
    db = Database(database_url)
    try:
        await db.upgrade()
        assert await db.current_revision() == "0013"
        async with db.engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        assert differences == []
    finally:
        await db.close()


async def test_upgrading_twice_changes_nothing(database_url: str):
    db = Database(database_url)
    try:
        await db.upgrade()
        await db.upgrade()
        assert await db.current_revision() == "0013"
    finally:
        await db.close()


async def test_groups_filtered_by_a_merged_topic_keep_their_questions(database_url: str):
    import sqlalchemy as sa

    db = Database(database_url)
    communities = sa.table(
        "communities",
        *(sa.column(c) for c in ("id", "platform", "external_id", "name")),
    )
    subscriptions = sa.table(
        "subscriptions",
        sa.column("topics", sa.JSON),
        sa.column("difficulties", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
        *(
            sa.column(c)
            for c in (
                "id",
                "community_id",
                "channel_id",
                "channel_name",
                "post_at",
                "timezone",
                "weekdays",
                "active",
                "paused",
                "seed",
            )
        ),
    )
    try:
        await db.upgrade("0005")
        if not db.is_sqlite:  # the shared server is already at head: step back to 0005 first
            async with db.engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: command.downgrade(alembic_config(sync), "0005")
                )
        async with db.transaction() as session:
            await session.execute(
                communities.insert().values(id=1, platform="console", external_id="l", name="")
            )
            for sid, topics in (
                (1, ["career", "interview-process", "rag"]),
                (2, ["rag"]),
                (3, ["federated-learning", "privacy", "nlp"]),
            ):
                await session.execute(
                    subscriptions.insert().values(
                        id=sid,
                        community_id=1,
                        channel_id=f"c{sid}",
                        channel_name="",
                        post_at="09:00",
                        timezone="UTC",
                        weekdays="0,1,2,3,4",
                        topics=topics,
                        difficulties=[],
                        active=True,
                        paused=False,
                        seed="s",
                        created_at=datetime(2026, 1, 1, tzinfo=UTC),
                    )
                )
        await db.upgrade()
        async with db.transaction() as session:
            rows = (
                await session.execute(sa.select(subscriptions.c.id, subscriptions.c.topics))
            ).all()
        assert dict(rows) == {
            1: ["interview-prep", "rag"],
            2: ["rag"],
            3: ["privacy", "llm"],
        }
    finally:
        await db.close()
