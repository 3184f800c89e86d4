"""The Discord study group end to end: the real discord.py client against the loopback fake."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.platforms.discord.adapter import DiscordRuntime
from prepbot.settings import Settings
from prepbot.store.models import Answer, Member, Subscription
from tests.discord_fake import FakeDiscord

GUILD, OWNER, ADMIN, ALICE, BOB, CAROL = 100, 500, 501, 502, 503, 504
TEXT, GONE = 2000, 2001


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        for user_id, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
            server.add_member(GUILD, user_id, name)
        server.add_text_channel(GUILD, TEXT, "study")
        server.add_text_channel(GUILD, GONE, "old-study")
        with server.patch_discord():
            yield server


@asynccontextmanager
async def running(url: str, fake: FakeDiscord) -> AsyncIterator[tuple[App, DiscordRuntime]]:
    configured = Settings.model_validate(
        {
            "database": {"url": url},
            "discord": {
                "token": fake.token,
                "application_id": fake.application_id,
                "api_url": fake.api_base,
                "gateway_url": fake.gateway_url,
                "guild_ids": [GUILD],
            },
        }
    )
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    runtime = DiscordRuntime(configured.discord, app.services)
    try:
        await runtime.start(timeout=30)
        yield app, runtime
    finally:
        await runtime.stop()
        await app.close()


async def command(
    fake: FakeDiscord,
    user: int,
    name: str,
    options: list[dict[str, Any]] | None = None,
    channel: int = TEXT,
) -> str:
    """Run a /prep subcommand and return everything the bot answered, as text."""
    return await fake.answered_command(GUILD, channel, user, f"prep {name}", options)


def bot_messages(fake: FakeDiscord, channel: int) -> list[dict[str, Any]]:
    """Return the bot's posts in a channel, leaving out its answers to slash commands."""
    return [
        m
        for m in fake.messages.get(channel, [])
        if m["author"]["id"] == str(fake.bot_user_id) and m["type"] != 20
    ]


async def test_the_study_group_loop_on_discord(database_url: str, fake: FakeDiscord):
    async with running(database_url, fake) as (app, _):
        assert fake.calls_to("PUT", rf"/applications/\d+/guilds/{GUILD}/commands")
        answer = await command(fake, ADMIN, "subscribe", [{"name": "time", "value": "09:00"}])
        assert "now a study group" in answer

        await command(fake, ADMIN, "post-now")
        (question,) = bot_messages(fake, TEXT)
        assert question["embeds"][0]["title"]
        (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]

        async def answers() -> dict[str, str]:
            async with app.db.transaction() as db:
                rows = await db.execute(
                    select(Member.external_id, Answer.text).join(
                        Answer, Answer.member_id == Member.id
                    )
                )
                return {str(k): v for k, v in rows.all()}

        async def settles_to(expected: dict[str, str]) -> None:
            deadline = time.monotonic() + 10
            while await answers() != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await answers() == expected

        # Members reply a moment apart, as people do; each step is stored before the next.
        await fake.member_message(thread_id, ALICE, "Ring all-reduce.", guild_id=GUILD)
        bob = await fake.member_message(thread_id, BOB, "A parameter server", guild_id=GUILD)
        carol = await fake.member_message(thread_id, CAROL, "Hmm", guild_id=GUILD)
        await settles_to(
            {str(ALICE): "Ring all-reduce.", str(BOB): "A parameter server", str(CAROL): "Hmm"}
        )
        await fake.member_edit(
            thread_id, int(bob["id"]), "Ring all-reduce, 2N per GPU", guild_id=GUILD
        )
        await fake.member_delete(thread_id, int(carol["id"]), guild_id=GUILD)
        await settles_to({str(ALICE): "Ring all-reduce.", str(BOB): "Ring all-reduce, 2N per GPU"})

        await command(fake, ADMIN, "reveal-now")
        reveal = bot_messages(fake, thread_id)[-1]
        assert f"<@{ALICE}>" in reveal["content"]
        assert f"<@{BOB}>" in reveal["content"]
        assert str(CAROL) not in reveal["content"]
        assert "https://" in json.dumps(reveal["embeds"])  # the source credit's link

        board = await command(fake, ALICE, "leaderboard", [{"name": "period", "value": "all"}])
        assert "@alice" in board
        assert "@bob" in board
        assert "carol" not in board


async def test_a_slash_command_is_answered_in_time_while_the_database_is_slow(
    database_url: str, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
):
    async with running(database_url, fake) as (app, _):
        real = app.db.transaction

        @asynccontextmanager
        async def slow() -> AsyncIterator[Any]:
            await asyncio.sleep(4)
            async with real() as db:
                yield db

        monkeypatch.setattr(app.db, "transaction", slow)
        started = time.monotonic()
        interaction = await fake.slash_command(GUILD, TEXT, ALICE, "prep today", [])
        await fake.wait_for(lambda: bool(fake.interaction_responses(interaction)), timeout=10)
        assert time.monotonic() - started < 3
        first = fake.interaction_responses(interaction)[0]
        assert first["kind"] == "callback"
        assert first["json"]["type"] == 5  # deferred
        await fake.wait_for(
            lambda: any(r["kind"] == "followup" for r in fake.interaction_responses(interaction)),
            timeout=15,
        )


async def test_a_rate_limited_post_is_retried_and_a_missing_channel_pauses_only_its_group(
    database_url: str, fake: FakeDiscord
):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe")
        await command(fake, ADMIN, "subscribe", channel=GONE)
        fake.fail_next("POST", rf"/channels/{TEXT}/messages$", status=429, retry_after=0.3)
        fake.channel_errors[GONE] = (404, 10003, "Unknown Channel")
        async with app.db.transaction() as db:
            groups = {s.channel_id: s.id for s in (await db.scalars(select(Subscription))).all()}
        today = datetime.now(UTC).date()
        assert await app.services.rounds.post_round(groups[str(GONE)], today) is None
        posted = await app.services.rounds.post_round(groups[str(TEXT)], today)
        assert posted is not None
        assert posted.posted_now
        assert len(fake.calls_to("POST", rf"/channels/{TEXT}/messages$")) == 2
        assert len(bot_messages(fake, TEXT)) == 1
        async with app.db.transaction() as db:
            gone = await db.get(Subscription, groups[str(GONE)])
            fine = await db.get(Subscription, groups[str(TEXT)])
        assert gone is not None
        assert gone.paused
        assert "10003" in (gone.paused_reason or "") or "Unknown Channel" in (
            gone.paused_reason or ""
        )
        assert fine is not None
        assert not fine.paused


async def test_only_manage_server_members_run_admin_commands(database_url: str, fake: FakeDiscord):
    async with running(database_url, fake) as (app, _):
        answer = await command(fake, ALICE, "subscribe")
        assert "Only admins" in answer
        async with app.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(Subscription)) == 0


async def test_replies_made_while_away_are_picked_up_and_a_resume_replays_nothing_twice(
    database_url: str, fake: FakeDiscord
):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe")
        await command(fake, ADMIN, "post-now")
        (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]
        await fake.member_message(thread_id, ALICE, "before the drop", guild_id=GUILD)
        await fake.drop_connection()
        await fake.member_message(thread_id, BOB, "during the drop", guild_id=GUILD)
        await fake.wait_for(lambda: fake.resumes >= 1, timeout=20)

        async def count() -> int:
            async with app.db.transaction() as db:
                return int(await db.scalar(select(func.count()).select_from(Answer)) or 0)

        deadline = time.monotonic() + 10
        while await count() < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await count() == 2
    # Down for good; carol answers meanwhile; the next start reads the thread's history.
    fake.messages.setdefault(thread_id, [])
    await fake.member_message(thread_id, CAROL, "while you were away", guild_id=GUILD)
    async with running(database_url, fake) as (app, _):
        async with app.db.transaction() as db:
            members = set(
                (
                    await db.scalars(
                        select(Member.external_id).join(Answer, Answer.member_id == Member.id)
                    )
                ).all()
            )
        assert members == {str(ALICE), str(BOB), str(CAROL)}


async def test_autocomplete_offers_topics_and_scenario_ids(database_url: str, fake: FakeDiscord):
    async with running(database_url, fake):
        topic = await fake.autocomplete(
            GUILD, TEXT, ALICE, "prep ask", [{"name": "topic", "value": "calib"}], focused="topic"
        )
        scenario = await fake.autocomplete(
            GUILD,
            TEXT,
            ALICE,
            "prep show",
            [{"name": "scenario", "value": "gpus"}],
            focused="scenario",
        )
        await fake.wait_for(lambda: all(fake.interaction_responses(i) for i in (topic, scenario)))
        (topics,) = fake.interaction_responses(topic)
        assert topics["json"]["type"] == 8
        assert topics["json"]["data"]["choices"][0]["value"] == "calibration"
        (scenarios,) = fake.interaction_responses(scenario)
        values = [c["value"] for c in scenarios["json"]["data"]["choices"]]
        assert "google-gradient-sync-1000-gpus" in values


async def test_a_forum_channel_gets_a_post_per_question(database_url: str, fake: FakeDiscord):
    fake.add_forum_channel(GUILD, 3000, "prep-forum")
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe", channel=3000)
        await command(fake, ADMIN, "post-now", channel=3000)
        (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == "3000"]
        await fake.member_message(thread_id, ALICE, "forum answer", guild_id=GUILD)

        async def count() -> int:
            async with app.db.transaction() as db:
                return int(await db.scalar(select(func.count()).select_from(Answer)) or 0)

        deadline = time.monotonic() + 10
        while await count() < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await count() == 1


async def add_on_time_answers(app: App, round_id: int, count: int) -> None:
    """Store ``count`` on-time answers to a round from members with snowflake ids, in SQL."""
    from sqlalchemy import text

    async with app.db.transaction() as db:
        community = await db.scalar(select(Subscription.community_id))
        series = (
            f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {count}) "
            if app.db.is_sqlite
            else ""
        )
        source = "c" if app.db.is_sqlite else f"generate_series(1, {count}) AS n"
        await db.execute(
            text(
                series + "INSERT INTO members (community_id, external_id, display_name) "
                f"SELECT :community, CAST(900000000000000000 + n AS TEXT), 'member ' || n "
                f"FROM {source}"
            ),
            {"community": community},
        )
        await db.execute(
            text(
                "INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, "
                "updated_at) SELECT :round, id, :yes, 'answer', :at, :at FROM members"
            ),
            {
                "round": round_id,
                "yes": True,
                "at": datetime(2026, 11, 30, 10, tzinfo=None if app.db.is_sqlite else UTC),
            },
        )


async def test_a_reveal_of_two_thousand_answers_pings_fifty_and_counts_the_rest(
    database_url: str, fake: FakeDiscord
):
    from prepbot.store.models import Round

    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe")
        await command(fake, ADMIN, "post-now")
        async with app.db.transaction() as db:
            round_id = await db.scalar(select(Round.id))
        assert round_id is not None
        await add_on_time_answers(app, round_id, 2000)
        await command(fake, ADMIN, "reveal-now")

        (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]
        reveal = bot_messages(fake, thread_id)[-1]
        assert len(reveal["content"]) <= 2000
        pinged = re.findall(r"<@(\d+)>", reveal["content"])
        assert 0 < len(pinged) <= 50
        assert "and 1,950 others — thank you!" in reveal["content"]
        (sent,) = fake.calls_to("POST", rf"/channels/{thread_id}/messages$")
        allowed = sent.json["allowed_mentions"]["users"]
        assert sorted(str(user) for user in allowed) == sorted(set(pinged))
