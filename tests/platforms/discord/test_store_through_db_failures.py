"""A member's Discord reply is kept when the database fails as the bot stores it.

Found by the soak (tests/test_soak.py): the gateway delivers a message once and never again,
so a reply whose store hit a dropped database connection was lost for good. The database
fails here at the driver, exactly once, on the reply's first statement; the member's reply
must still be credited in the reveal. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from prepbot.app import App
from prepbot.store.models import Reply
from tests.discord_fake import FakeDiscord
from tests.platforms.discord.test_discord_app import (
    ADMIN,
    ALICE,
    GUILD,
    TEXT,
    bot_messages,
    command,
    running,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=500)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        server.add_member(GUILD, ALICE, "alice")
        server.add_text_channel(GUILD, TEXT, "study")
        with server.patch_discord():
            yield server


def fail_once(app: App, table: str) -> None:
    """Make the first statement reading ``table`` fail as a dropped connection does."""
    failed = False

    def hook(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        nonlocal failed
        if not failed and table in statement:
            failed = True
            raise OperationalError(statement, None, ConnectionResetError("connection was closed"))

    for engine in {app.db.engine, app.db.writer_engine}:  # the answer writer has its own
        event.listen(engine.sync_engine, "before_cursor_execute", hook)


async def replies(app: App) -> int:
    async with app.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Reply)) or 0)


async def test_a_reply_is_kept_when_storing_it_fails_once(database_url: str, fake: FakeDiscord):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe", [{"name": "time", "value": "09:00"}])
        await command(fake, ADMIN, "post-now")
        (thread,) = [t for t, th in fake.threads.items() if th["parent_id"] == str(TEXT)]

        fail_once(app, "round_threads")  # the reply's first look for its round
        await fake.member_message(thread, ALICE, "Ring all-reduce.", guild_id=GUILD)
        deadline = time.monotonic() + 10  # stored in well under a second once it is retried
        while await replies(app) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

        await command(fake, ADMIN, "reveal-now")
        assert f"Answered on time: <@{ALICE}>" in bot_messages(fake, thread)[-1]["content"]
