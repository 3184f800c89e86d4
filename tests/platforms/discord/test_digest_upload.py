"""The weekly digest on Discord: an embed showing its attached picture, else the embed alone.

Driven through the real DiscordPlatform (the running bot's discord.py client) against the
loopback fake, in a text channel and in a forum, as a member would see the channel afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from prepbot.app import App
from prepbot.core.views import (
    DigestCard,
    DigestMember,
    DigestPoint,
    DigestRound,
    MemberRef,
)
from prepbot.platforms.discord.adapter import DiscordPlatform, DiscordRuntime
from prepbot.platforms.discord.embeds import DESCRIPTION, TOTAL, digest_message
from prepbot.services.ports import ChannelUnavailable
from tests import digest_cards as cards
from tests.digest_cards import END, png
from tests.discord_fake import ATTACH_FILES, FakeDiscord
from tests.platforms.discord.test_discord_app import ALICE, BOB, GONE, GUILD, OWNER, TEXT, running

FORUM = 3000
WEEK_NAME = "Weekly digest — Mon 23 Nov to Sun 29 Nov 2026"


def digest_card(end: date = END, **changes: Any) -> DigestCard:
    """Return a two-round week whose members' names look like mentions and titles like markdown.

    A digest must ping nobody all the same.
    """
    return cards.digest_card(
        end,
        people=(MemberRef(str(ALICE), f"<@{ALICE}> alice"), MemberRef(str(BOB), "@everyone bob")),
        titles=("Gradient sync [8 GPUs]", "RAG *evals* drift"),
        link="https://discord.com/channels/100/2000/2001",
        **changes,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ALICE, "alice")
        server.add_member(GUILD, BOB, "bob")
        server.add_text_channel(GUILD, TEXT, "study")
        server.add_text_channel(GUILD, GONE, "old-study")
        server.add_forum_channel(GUILD, FORUM, "prep-forum")
        with server.patch_discord():
            yield server


@pytest.fixture
async def platform(tmp_path: Path, fake: FakeDiscord) -> AsyncIterator[DiscordPlatform]:
    started: tuple[App, DiscordRuntime]
    async with running(f"sqlite:///{tmp_path / 'prepbot.db'}", fake) as started:
        yield started[1].platform


async def fetched(url: str) -> bytes:
    """Download an attachment as a member's client would."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


def sent_payload(fake: FakeDiscord, channel: int) -> dict[str, Any]:
    """Return the message body of the bot's last send to a channel (a forum: its new post's)."""
    sends = [
        *fake.calls_to("POST", rf"/channels/{channel}/messages"),
        *fake.calls_to("POST", rf"/channels/{channel}/threads"),
    ]
    body: dict[str, Any] = sends[-1].json
    return body.get("message", body) if channel == FORUM else body


@pytest.mark.parametrize("channel", [TEXT, FORUM])
async def test_the_digest_is_an_embed_showing_its_attached_picture(
    fake: FakeDiscord, platform: DiscordPlatform, channel: int
):
    card, picture = digest_card(), png()
    posted = await platform.post_digest(str(channel), card, picture, community_id=str(GUILD))

    message = fake.message(posted)
    (attachment,) = message["attachments"]
    assert attachment["filename"] == card.picture_name == "prepbot-digest-2026-11-29.png"
    assert attachment["content_type"] == "image/png"
    assert attachment["size"] == len(picture)
    assert await fetched(attachment["url"]) == picture
    (embed,) = message["embeds"]
    assert embed["image"]["url"] == attachment["url"]  # the embed shows the attached picture
    assert embed["title"] == "📅 Weekly digest — #study, Mon 23 Nov to Sun 29 Nov 2026"
    assert embed["url"] == "https://prep.example.org/archive/abc"
    assert embed["footer"]["text"] == "prepbot weekly digest · week ending 2026-11-29"
    description = embed["description"]
    assert r"[Gradient sync \[8 GPUs\]](https://discord.com/channels/100/2000/2001)" in description
    assert "5 answered on time, 2 late" in description
    assert r"**RAG \*evals\* drift**" in description
    assert "10 answers from 7 members" in description
    assert "[the study group archive](https://prep.example.org/archive/abc)" in description
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "(6/7, 86%)" in fields["✅ Covered most"]
    assert "(1/3, 33%)" in fields["🔍 Covered least (worth a second look)"]
    assert "reached a 10-round streak" in fields["🔥 Streak milestones"]
    assert fields["🏆 Leaders this week"].startswith("1. **")
    # Nobody is pinged: no mentions parsed, none allowed, names shown in bold.
    assert message["mentions"] == []
    assert not message["mention_everyone"]
    assert message["content"] == ""
    assert sent_payload(fake, channel)["allowed_mentions"]["parse"] == []
    assert f"<@{ALICE}>" not in json.dumps(embed, ensure_ascii=False)
    if channel == FORUM:
        assert fake.threads[int(posted)]["name"] == WEEK_NAME
        assert fake.threads[int(posted)]["parent_id"] == str(FORUM)


@pytest.mark.parametrize("channel", [TEXT, FORUM])
@pytest.mark.parametrize("refusal", ["missing permissions", "too large"])
async def test_a_refused_picture_sends_the_embed_alone(
    fake: FakeDiscord,
    platform: DiscordPlatform,
    caplog: pytest.LogCaptureFixture,
    channel: int,
    refusal: str,
):
    if refusal == "missing permissions":
        fake.deny_bot(channel, ATTACH_FILES)
    else:
        fake.upload_limit = 100
    caplog.set_level(logging.WARNING, "prepbot.platforms.discord.adapter")
    card = digest_card()
    posted = await platform.post_digest(str(channel), card, png(), community_id=str(GUILD))

    message = fake.message(posted)
    assert message["attachments"] == []
    (embed,) = message["embeds"]
    assert "image" not in embed
    assert embed["footer"]["text"].endswith("2026-11-29")
    code = "50013" if refusal == "missing permissions" else "40005"
    assert any(code in r.getMessage() for r in caplog.records)
    posts = [m for m in fake.messages.get(channel, []) if m["embeds"]]
    if channel == FORUM:
        posts = [fake.message(t) for t, th in fake.threads.items() if th["parent_id"] == "3000"]
    assert len(posts) == 1


async def test_find_digest_finds_this_weeks_post_and_no_other(
    fake: FakeDiscord, platform: DiscordPlatform
):
    since = datetime.now(UTC) - timedelta(hours=1)
    card, later = digest_card(), digest_card(END + timedelta(weeks=1))
    with_picture = await platform.post_digest(str(TEXT), card, png(), community_id=str(GUILD))
    embed_only = await platform.post_digest(str(TEXT), later, None, community_id=str(GUILD))
    assert fake.message(embed_only)["attachments"] == []

    assert await platform.find_digest(str(TEXT), card, since=since) == with_picture
    assert await platform.find_digest(str(TEXT), later, since=since) == embed_only
    earlier = digest_card(END - timedelta(weeks=1))
    assert await platform.find_digest(str(TEXT), earlier, since=since) is None


async def test_find_digest_finds_a_forum_post_by_its_name(
    fake: FakeDiscord, platform: DiscordPlatform
):
    since = datetime.now(UTC) - timedelta(hours=1)
    card = digest_card()
    posted = await platform.post_digest(str(FORUM), card, png(), community_id=str(GUILD))
    await fake.wait_for(lambda: bool(platform.client.get_channel(int(posted))))
    assert await platform.find_digest(str(FORUM), card, since=since) == posted
    other = digest_card(END + timedelta(weeks=1))
    assert await platform.find_digest(str(FORUM), other, since=since) is None


async def test_a_gone_channel_raises_channel_unavailable(
    fake: FakeDiscord, platform: DiscordPlatform
):
    fake.channel_errors[GONE] = (404, 10003, "Unknown Channel")
    card = digest_card()
    with pytest.raises(ChannelUnavailable):
        await platform.post_digest(str(GONE), card, png(), community_id=str(GUILD))
    with pytest.raises(ChannelUnavailable):
        await platform.find_digest(str(GONE), card, since=datetime.now(UTC))


def test_a_huge_digest_stays_within_discords_embed_limits():
    rounds = tuple(
        DigestRound(END - timedelta(days=n % 7), f"s{n}", "A long title " * 20, None, n, 1)
        for n in range(80)
    )
    points = tuple(DigestPoint("a key point " * 40, "t " * 80, 1, 2) for _ in range(20))
    leaders = tuple(
        DigestMember(MemberRef(str(n), f"member {n} " * 5), n, 0, n, n) for n in range(40)
    )
    card = digest_card(rounds=rounds, most_covered=points, least_covered=points, leaders=leaders)
    (embed,) = digest_message(card, card.picture_name).embeds
    assert len(embed) <= TOTAL
    assert len(embed.description or "") <= DESCRIPTION
    assert all(len(f.value or "") <= 1024 for f in embed.fields)
    assert "…and more than fits here." in (embed.description or "")
    assert (embed.description or "").endswith("(https://prep.example.org/archive/abc)")
