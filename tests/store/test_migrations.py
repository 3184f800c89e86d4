"""The shipped migrations create exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from prepbot.store.db import Database
from prepbot.store.models import Base


async def test_migrations_match_the_models(database_url: str):
    db = Database(database_url)
    try:
        await db.upgrade()
        assert await db.current_revision() == "0005"
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
        assert await db.current_revision() == "0005"
    finally:
        await db.close()
