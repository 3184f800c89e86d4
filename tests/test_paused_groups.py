"""Never silent: a study group whose channel is gone is paused, and everyone who should know does.

The real Slack adapter talks to the loopback fake Slack, whose ``chat.postMessage`` answers
``is_archived`` for an archived channel; the real Discord adapter talks to the fake Discord,
which answers 403 Missing Permissions. The admin who runs ``post-now`` reads the cause, that the
group is paused and how to resume; ``/healthz`` turns *degraded* (still HTTP 200) and names the
channel; ``/metrics`` counts the paused group; ``/prep status`` shows the pause and what the
rotation has left; ``/prep resume`` makes everything healthy again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select

from prepbot.app import App, _health_checks, build_app
from prepbot.core.clock import ManualClock
from prepbot.observability import HealthServer
from prepbot.platforms.discord.adapter import DiscordRuntime
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.scheduling import RoundScheduler
from prepbot.settings import Settings
from prepbot.store.models import Subscription
from tests.discord_fake import FakeDiscord
from tests.slack_fake import FakeSlack, sign, slash_command

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0STUDY"
USERS = {"U0ALICE": "alice", "U0ADMIN": "ada"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as started:
        for user_id, name in USERS.items():
            started.add_user(user_id, name, admin=user_id == "U0ADMIN")
        started.messages.setdefault(CHANNEL, [])
        yield started


@asynccontextmanager
async def slack_running(url: str, fake: FakeSlack) -> AsyncIterator[tuple[App, HealthServer]]:
    """Run the Slack adapter (HTTP mode) and the health endpoint on a free port."""
    configured = Settings.model_validate(
        {
            "database": {"url": url},
            "slack": {
                "bot_token": fake.bot_token,
                "signing_secret": SECRET,
                "mode": "http",
                "api_url": fake.api_url,
                "http_host": "127.0.0.1",
                "http_port": 0,
            },
        }
    )
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    runtime = SlackRuntime(configured.slack, app.services)
    scheduler = RoundScheduler(app.services)
    health = HealthServer(
        app.services.ctx.metrics,
        _health_checks(app, scheduler, {"slack": runtime}, ["slack"]),
        problems=app.services.status.health_problems,
    )
    try:
        await runtime.start()
        await health.start("127.0.0.1", 0)
        app.slack_port = runtime.port  # type: ignore[attr-defined]
        yield app, health
    finally:
        await health.stop()
        await runtime.stop()
        await app.close()


async def prep(app: App, fake: FakeSlack, text: str, user: str = "U0ADMIN") -> str:
    """Type ``/prep text`` in the study channel; return the bot's answer (text and blocks)."""
    form = slash_command(
        text,
        user_id=user,
        user_name=USERS[user],
        channel_id=CHANNEL,
        response_url=fake.response_url(),
        channel_name="study",
    )
    body = urlencode(form).encode()
    before = len(fake.responses)
    url = f"http://127.0.0.1:{app.slack_port}/slack/events"  # type: ignore[attr-defined]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body, SECRET)},
        ) as reply,
    ):
        assert reply.status == 200
    await fake.wait_for(lambda: len(fake.responses) > before, timeout=10)
    _, answer = fake.responses[before]
    return json.dumps(answer, ensure_ascii=False)


async def get(health: HealthServer, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{health.port}{path}") as reply,
    ):
        body = await reply.json() if path == "/healthz" else await reply.text()
        return reply.status, body


async def test_an_archived_slack_channel_is_explained_to_the_admin_and_shown_in_healthz(
    database_url: str, slack: FakeSlack
):
    async with slack_running(database_url, slack) as (app, health):
        assert "now a study group" in await prep(app, slack, "subscribe 09:00 UTC daily")
        status, body = await get(health, "/healthz")
        assert (status, body["status"], body["problems"]) == (200, "ok", [])

        slack.channel_errors[CHANNEL] = "is_archived"
        answer = await prep(app, slack, "post-now")
        assert "the channel was archived" in answer
        assert "is now paused" in answer
        assert "unarchive the channel" in answer
        assert "/prep resume" in answer
        assert "unavailable" not in answer

        status, body = await get(health, "/healthz")
        assert status == 200  # a paused group must not take the instance out of service
        assert body["status"] == "degraded"
        (problem,) = body["problems"]
        assert problem["platform"] == "slack"
        assert problem["channel_id"] == CHANNEL
        assert problem["channel"] == "#study"
        assert "is_archived" in problem["reason"]
        assert "archived" in problem["message"]
        assert datetime.fromisoformat(problem["since"]) <= datetime.now(UTC)
        _, metrics = await get(health, "/metrics")
        assert 'prepbot_paused_study_groups{reason="platform"} 1.0' in metrics

        async with app.db.transaction() as db:
            group = await db.scalar(select(Subscription))
        assert group is not None
        bank = len(app.services.rounds.eligible(group))
        shown = await prep(app, slack, "status")
        assert "Paused" in shown
        assert "the channel was archived" in shown
        assert "/prep resume" in shown
        assert f"{bank} of {bank} matching scenarios unused" in shown  # the dropped round used none
        assert "Only admins" in await prep(app, slack, "status", user="U0ALICE")

        del slack.channel_errors[CHANNEL]  # someone unarchived it
        assert "Resumed" in await prep(app, slack, "resume")
        status, body = await get(health, "/healthz")
        assert (status, body["status"], body["problems"]) == (200, "ok", [])
        _, metrics = await get(health, "/metrics")
        assert 'prepbot_paused_study_groups{reason="platform"} 0.0' in metrics

        assert "Posted today's question" in await prep(app, slack, "post-now")
        shown = await prep(app, slack, "status")
        assert "Paused" not in shown
        assert "posted" in shown
        assert f"{bank - 1} of {bank} matching scenarios unused" in shown


async def test_a_reveal_the_channel_refuses_is_explained_not_reported_as_done(
    database_url: str, slack: FakeSlack
):
    async with slack_running(database_url, slack) as (app, health):
        await prep(app, slack, "subscribe 09:00 UTC daily")
        assert "Posted today's question" in await prep(app, slack, "post-now")
        slack.channel_errors[CHANNEL] = "not_in_channel"
        answer = await prep(app, slack, "reveal-now")
        assert "Revealed 1 question" in answer
        assert "could not post the reveal" in answer
        assert "the bot was removed from the channel" in answer
        assert "invite the bot back" in answer
        assert "/prep resume" in answer
        _, body = await get(health, "/healthz")
        assert body["status"] == "degraded"
        assert "not_in_channel" in body["problems"][0]["reason"]


async def test_a_paused_group_and_a_current_problem_both_appear_in_healthz(
    database_url: str, slack: FakeSlack
):
    async with slack_running(database_url, slack) as (app, health):
        await prep(app, slack, "subscribe 09:00 UTC daily")
        await prep(app, slack, "pause")
        status, body = await get(health, "/healthz")
        assert (status, body["status"]) == (200, "ok")  # an admin's pause is not a problem
        _, metrics = await get(health, "/metrics")
        assert 'prepbot_paused_study_groups{reason="admin"} 1.0' in metrics

        app.services.ctx.problems.report("platform:slack", "slack", "Slack is not answering")
        status, body = await get(health, "/healthz")
        assert (status, body["status"]) == (200, "degraded")
        assert [p["message"] for p in body["problems"]] == ["Slack is not answering"]
        shown = await prep(app, slack, "status")
        assert "Slack is not answering" in shown
        assert "an admin paused it" in shown


async def test_an_unsubscribed_channel_says_how_to_subscribe(database_url: str, slack: FakeSlack):
    async with slack_running(database_url, slack) as (app, _):
        shown = await prep(app, slack, "status")
        assert "not a study group" in shown
        assert "/prep subscribe" in shown


# -- Discord -----------------------------------------------------------------------------------

GUILD, OWNER, ADMIN, TEXT = 100, 500, 501, 2000


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        server.add_text_channel(GUILD, TEXT, "study")
        with server.patch_discord():
            yield server


async def test_a_discord_403_is_explained_to_the_admin(
    database_url: str, discord_fake: FakeDiscord
):
    configured = Settings.model_validate(
        {
            "database": {"url": database_url},
            "discord": {
                "token": discord_fake.token,
                "application_id": discord_fake.application_id,
                "api_url": discord_fake.api_base,
                "gateway_url": discord_fake.gateway_url,
                "guild_ids": [GUILD],
            },
        }
    )
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    runtime = DiscordRuntime(configured.discord, app.services)
    try:
        await runtime.start(timeout=30)

        async def prep_discord(name: str) -> str:
            return await discord_fake.answered_command(GUILD, TEXT, ADMIN, f"prep {name}", [])

        assert "now a study group" in await prep_discord("subscribe")
        discord_fake.channel_errors[TEXT] = (403, 50013, "Missing Permissions")
        answer = await prep_discord("post-now")
        assert "the bot lacks permission to post in the channel" in answer
        assert "is now paused" in answer
        assert "Send Messages" in answer
        assert "/prep resume" in answer

        interaction = await discord_fake.slash_command(GUILD, TEXT, ADMIN, "prep status", [])
        await discord_fake.wait_for(
            lambda: any(
                r["kind"] == "followup" for r in discord_fake.interaction_responses(interaction)
            ),
            timeout=15,
        )
        responses = discord_fake.interaction_responses(interaction)
        assert responses[0]["json"]["data"]["flags"] & 64  # only the admin sees the status
        shown = json.dumps(responses, ensure_ascii=False)
        assert "Paused" in shown
        assert "lacks permission" in shown
    finally:
        await runtime.stop()
        await app.close()
