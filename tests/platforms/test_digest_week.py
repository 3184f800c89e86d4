"""A simulated week on Slack and on Discord ends with one weekly digest per study group.

The scheduler posts Monday to Friday at 09:00 and reveals at 17:00 through the real adapters;
members answer in the threads. Right after Friday's reveal each group gets its digest once,
its picture uploaded through the platform's real file API (Slack: files.getUploadURLExternal,
the upload URL, files.completeUploadExternal; Discord: a multipart attachment), however often
the scheduler ticks afterwards or a second scheduler (a replica) ticks too. A group whose admin
turned the digest off gets none. With ``PREPBOT_WRITE_SCREENSHOTS=1`` the Slack digest's
picture is saved as ``docs/screenshots/digest.png`` for the README.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from prepbot.app import App
from prepbot.content.model import Scenario
from prepbot.core.clock import ManualClock
from prepbot.scheduling import RoundScheduler
from prepbot.store.models import Round
from tests.discord_fake import FakeDiscord
from tests.platforms.test_feedback_week import (  # noqa: F401  (fixtures)
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    GUILD,
    TEXT,
    discord_fake,
    discord_reacted,
    discord_running,
    slack,
    slack_running,
    strong_answer,
)
from tests.slack_fake import FakeSlack, event_callback, message_event, next_ts, slash_command

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
SUNDAY = (MONDAY + timedelta(days=6)).date()
PICTURE = f"prepbot-digest-{SUNDAY.isoformat()}.png"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "digest.png"
SLACK_GROUPS = ("C0STUDY", "C0SECOND", "C0QUIET")
SLACK_MEMBERS = ("U0ALICE", "U0BOB", "U0CAROL")


def check_picture(data: bytes) -> None:
    """Check a digest picture is a real, non-empty PNG of a readable size."""
    assert 5_000 < len(data) < 1_000_000
    image = Image.open(BytesIO(data))
    assert image.format == "PNG"
    assert image.width >= 800
    assert image.height >= 300
    colours = image.convert("RGB").getcolors(maxcolors=100_000)
    assert colours is not None
    assert len(colours) > 20  # bars, a calendar and text, not a blank page


async def play_week(
    clock: ManualClock,
    scheduler: RoundScheduler,
    answer: Any,
) -> list[tuple[int, Any]]:
    """Tick Monday to Friday at 09:00 and 17:00, answering in between; return the digests."""
    digests = []
    for day in range(5):
        clock.set(MONDAY + timedelta(days=day, hours=9))
        digests += (await scheduler.tick()).digests
        await answer(day)
        clock.set(MONDAY + timedelta(days=day, hours=17))
        digests += (await scheduler.tick()).digests
    return digests


@pytest.mark.slow(seconds=23)
async def test_a_week_on_slack_ends_with_one_digest_per_group_and_its_uploaded_picture(
    database_url: str,
    slack: FakeSlack,  # noqa: F811  (the fixture)
):
    clock = ManualClock(MONDAY)
    async with slack_running(database_url, slack, clock) as app:
        for channel in SLACK_GROUPS:
            words = "subscribe 09:00 UTC mon-fri reveal=17:00"
            if channel == "C0QUIET":
                words += " digest=off"
            await slack_prep(slack, channel, words)
        scheduler = RoundScheduler(app.services)

        async def answer(day: int) -> None:
            for channel in SLACK_GROUPS:
                thread = question_ts(slack, channel)
                strong, _ = strong_answer(await scenario_of(app, thread), day)
                for number, user in enumerate(SLACK_MEMBERS):
                    if user == "U0CAROL" and day % 2:
                        continue
                    ts = next_ts()
                    text = strong if number < 2 - day % 2 else f"Day {day}: no idea ({number})."
                    slack.add_message(channel, user=user, text=text, thread_ts=thread, ts=ts)
                    event = message_event(channel, user, text, ts, thread_ts=thread)
                    await slack.wait_ack(
                        await slack.send_envelope("events_api", event_callback(event))
                    )
            answered = sum(len(SLACK_GROUPS) * (3 if d % 2 == 0 else 2) for d in range(day + 1))
            await slack.wait_for(lambda: len(slack.calls_to("reactions.add")) >= answered)

        digests = await play_week(clock, scheduler, answer)
        assert len(digests) == 2  # both groups with a digest, at Friday's reveal

        for _ in range(3):  # later ticks, and a replica's, post nothing more
            clock.advance(timedelta(minutes=30))
            assert (await scheduler.tick()).digests == []
            assert (await RoundScheduler(app.services).tick()).digests == []

        uploads = slack.calls_to("files.getUploadURLExternal")
        assert [call.params["filename"] for call in uploads] == [PICTURE, PICTURE]
        assert len(slack.calls_to("files.completeUploadExternal")) == 2
        for channel in ("C0STUDY", "C0SECOND"):
            shared = [m for m in slack.messages[channel] if m.get("files")]
            assert len(shared) == 1, channel
            assert (
                f"📅 Weekly digest — #{channel.lower()}, Mon 02 Mar to Sun 08 Mar"
                in (shared[0]["text"])
            )
            assert "Leaders this week" in shared[0]["text"]
            file_id = shared[0]["files"][0]["id"]
            name, data = slack.uploaded_files[file_id]
            assert name == PICTURE
            check_picture(data)
        assert not [m for m in slack.messages["C0QUIET"] if m.get("files")]
        assert not [
            m
            for m in slack.messages["C0QUIET"]
            if (m.get("metadata") or {}).get("event_type") == "prepbot_digest"
        ]
        if os.environ.get("PREPBOT_WRITE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.write_bytes(data)


async def slack_prep(fake: FakeSlack, channel: str, text: str) -> str:
    """Run /prep as the workspace admin in a channel; return the bot's answer as JSON text."""
    before = len(fake.responses)
    form = slash_command(
        text,
        user_id="U0ADMIN",
        user_name="ada",
        channel_id=channel,
        response_url=fake.response_url(),
        channel_name=channel.lower(),
    )
    await fake.wait_ack(await fake.send_envelope("slash_commands", form))
    await fake.wait_for(lambda: len(fake.responses) > before)
    return json.dumps(fake.responses[before][1], ensure_ascii=False)


async def scenario_of(app: App, thread: str) -> Scenario:
    """Return the scenario of the round whose question is ``thread``."""
    async with app.services.ctx.db.transaction() as session:
        scenario_id = await session.scalar(
            select(Round.scenario_id).where(Round.question_message_id == thread)
        )
    scenario = app.services.ctx.catalog.get(str(scenario_id))
    assert scenario is not None
    return scenario


def question_ts(fake: FakeSlack, channel: str) -> str:
    """Return the ts of the newest question the bot posted in a channel."""
    questions = [
        m
        for m in fake.messages[channel]
        if (m.get("metadata") or {}).get("event_type") == "prepbot_question"
    ]
    return str(questions[-1]["ts"])


SECOND = 2001


async def test_a_week_on_discord_ends_with_one_digest_per_group_with_its_picture_attached(
    database_url: str,
    discord_fake: FakeDiscord,  # noqa: F811  (the fixture)
):
    fake = discord_fake
    fake.add_text_channel(GUILD, SECOND, "study-two")
    clock = ManualClock(MONDAY)
    async with discord_running(database_url, fake, clock) as app:
        for channel in (TEXT, SECOND):
            answered = await fake.answered_command(
                GUILD,
                channel,
                ADMIN,
                "prep subscribe",
                [
                    {"name": "time", "value": "09:00"},
                    {"name": "timezone", "value": "UTC"},
                    {"name": "days", "value": "mon-fri"},
                    {"name": "reveal", "value": "17:00"},
                    {"name": "digest", "value": "auto"},
                ],
            )
            assert "now a study group" in answered
        scheduler = RoundScheduler(app.services)

        async def answer(day: int) -> None:
            for channel in (TEXT, SECOND):
                thread = max(t for t, th in fake.threads.items() if th["parent_id"] == str(channel))
                replies = []
                for who in (ALICE, BOB, CAROL):
                    if who == CAROL and day % 2:
                        continue
                    said = f"Day {day}: calibrate on a held-out set, then check the ECE."
                    replies.append(await fake.member_message(thread, who, said, guild_id=GUILD))
                await discord_reacted(fake, thread, replies, "✅")  # stored before the reveal

        digests = await play_week(clock, scheduler, answer)
        assert len(digests) == 2
        for _ in range(3):
            clock.advance(timedelta(minutes=30))
            assert (await scheduler.tick()).digests == []
            assert (await RoundScheduler(app.services).tick()).digests == []

        for channel in (TEXT, SECOND):
            posted = [
                m
                for m in fake.messages[channel]
                if m["author"]["id"] == str(fake.bot_user_id) and m.get("attachments")
            ]
            assert len(posted) == 1, channel
            attachment = posted[0]["attachments"][0]
            assert attachment["filename"] == PICTURE
            assert attachment["content_type"] == "image/png"
            embed = posted[0]["embeds"][0]
            assert embed["image"]["url"] == attachment["url"]
            assert embed["footer"]["text"].startswith("prepbot weekly digest")
            check_picture(fake.attachments[int(attachment["id"])])
