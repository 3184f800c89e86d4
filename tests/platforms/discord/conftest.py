"""The Discord command tests' world: a server with an admin, a member and a study channel.

Modules that need another world define their own ``fake``, which takes precedence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from prepbot.app import App
from prepbot.platforms.discord.adapter import DiscordRuntime
from tests.discord_fake import FakeDiscord
from tests.platforms.discord.test_discord_app import ADMIN, ALICE, GUILD, OWNER, TEXT, running


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        server.add_member(GUILD, ALICE, "alice")
        server.add_text_channel(GUILD, TEXT, "study")
        with server.patch_discord():
            yield server


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeDiscord) -> AsyncIterator[tuple[App, DiscordRuntime]]:
    async with running(f"sqlite:///{tmp_path / 'prepbot.db'}", fake) as started:
        yield started
