"""/prep streak on Discord answers privately with the calendar as a picture and as text.

Driven through the real command path (the running bot's discord.py client, the fake gateway's
interaction, the deferral and its ephemeral follow-up) against the loopback fake.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import aiohttp
import pytest
from PIL import Image

from prepbot.core.views import StreakView
from prepbot.platforms.discord import adapter
from tests.discord_fake import FakeDiscord
from tests.platforms.discord.test_discord_app import ADMIN, ALICE, GUILD, TEXT

EPHEMERAL = 64
PICTURE = "streak-calendar.png"


async def answered_round(fake: FakeDiscord) -> None:
    """Make the channel a study group, post today's question and have alice answer it."""
    await fake.answered_command(GUILD, TEXT, ADMIN, "prep subscribe")
    await fake.answered_command(GUILD, TEXT, ADMIN, "prep post-now")
    (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]
    reply = await fake.member_message(thread_id, ALICE, "Ring all-reduce.", guild_id=GUILD)
    await fake.wait_for(lambda: bool(fake.reactions_on(thread_id, reply["id"])))  # stored


async def streak_answer(fake: FakeDiscord) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run /prep streak as alice; return the follow-up as sent and the message it became."""
    interaction = await fake.slash_command(GUILD, TEXT, ALICE, "prep streak", [])
    await fake.wait_for(
        lambda: any(r["kind"] == "followup" for r in fake.interaction_responses(interaction)),
        timeout=15,
    )
    responses = fake.interaction_responses(interaction)
    assert responses[0]["kind"] == "callback"
    assert responses[0]["json"]["type"] == 5  # deferred at once: Discord's 3 s are kept
    (followup,) = [r for r in responses if r["kind"] == "followup"]
    shown = fake.interactions[interaction].followups[followup["message_id"]]
    return followup["json"], shown


async def fetched(url: str) -> bytes:
    """Download an attachment as the member's client would."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_the_streak_answer_carries_the_calendar_picture_and_the_text(
    fake: FakeDiscord, bot: Any
):
    await answered_round(fake)
    sent, shown = await streak_answer(fake)

    assert shown["flags"] & EPHEMERAL  # only alice sees it
    (attachment,) = shown["attachments"]
    assert attachment["filename"] == PICTURE
    assert attachment["content_type"] == "image/png"
    with Image.open(BytesIO(await fetched(attachment["url"]))) as picture:
        assert picture.format == "PNG"
        assert picture.width > 100
        assert picture.height > 50
    (embed,) = shown["embeds"]
    assert embed["image"]["url"] == attachment["url"]
    assert "The last 12 weeks" in embed["description"]  # the text calendar stays
    assert "🟦" in embed["description"]  # today's round, still open
    assert sent["allowed_mentions"]["parse"] == []


async def test_the_text_calendar_still_arrives_when_drawing_fails(
    fake: FakeDiscord, bot: Any, monkeypatch: pytest.MonkeyPatch
):
    def broken(view: StreakView) -> bytes:
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(adapter, "render_streak_calendar", broken)
    await answered_round(fake)
    sent, shown = await streak_answer(fake)

    assert shown["flags"] & EPHEMERAL
    assert not sent.get("attachments")  # no file was sent
    assert shown["attachments"] == []
    (embed,) = shown["embeds"]
    assert "image" not in embed
    assert "The last 12 weeks" in embed["description"]
    assert "streak" in embed["description"]


async def test_a_streak_without_a_calendar_sends_no_picture(fake: FakeDiscord, bot: Any):
    await fake.answered_command(GUILD, TEXT, ADMIN, "prep subscribe")
    _, shown = await streak_answer(fake)  # alice never answered: no calendar to draw
    assert shown["attachments"] == []
    assert "image" not in shown["embeds"][0]
