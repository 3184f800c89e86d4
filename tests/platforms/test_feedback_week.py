"""A week of rounds with feedback, on Slack and on Discord, through the real adapters.

Every day a round of the built-in bank is posted; alice answers well (naming some key points
in her own sentences), bob answers vaguely, carol answers after the reveal. What members see:
a ✅ on each answer once it is stored (🕓 on a late one), a reveal whose group line counts how
many answers made each key point (never who), and private feedback right after it naming the
points each on-time answerer made and missed, the same as ``/prep feedback`` shows again. A
member who turned the messages off gets none; on Discord, one whose DMs are closed reads it
with ``/prep feedback``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prepbot.app import App, build_app
from prepbot.content.model import Scenario
from prepbot.core.clock import ManualClock
from prepbot.platforms.discord.adapter import DiscordRuntime
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.platforms.slack.blocks import escape
from prepbot.settings import Settings
from prepbot.store.models import Round
from tests.discord_fake import FakeDiscord
from tests.slack_fake import FakeSlack, message_event, next_ts, slash_command

DAYS = 7
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WEAK_ANSWER = "No idea honestly, I would just train it for longer and hope for the best."


def strong_answer(scenario: Scenario, day: int) -> tuple[str, set[str]]:
    """Return an answer naming some of the scenario's key points, and which ones it names."""
    from prepbot.core.grading import grade

    rubric = scenario.rubric
    assert rubric is not None

    def sentence(term: str) -> str:
        return (
            f"First I would bring in {term.replace(' & ', ' and ')}, because it changes "
            "how I would answer the interviewer here."
        )

    chosen: dict[str, str] = {}
    for point in rubric.key_points[: 2 + day % 3]:
        # The first term that makes the point on its own, written as a member might.
        for term in point.look_for:
            if point.id in grade(sentence(term), rubric).covered_ids:
                chosen[point.id] = sentence(term)
                break
    assert len(chosen) >= 2, f"{scenario.id}: no term makes its point in a plain sentence"
    return " ".join(chosen.values()), set(chosen)


def point_lines(scenario: Scenario, made: set[str]) -> tuple[list[str], list[str]]:
    """Return the feedback lines expected for points made and points missed."""
    assert scenario.rubric is not None
    return (
        [f"✅ {p.point}" for p in scenario.rubric.key_points if p.id in made],
        [f"⬜ {p.point}" for p in scenario.rubric.key_points if p.id not in made],
    )


def made_in(text: str, scenario: Scenario) -> set[str]:
    """Return the key points a feedback message lists as made."""
    assert scenario.rubric is not None
    return {p.id for p in scenario.rubric.key_points if f"✅ {p.point}" in text}


def assert_group_line(reveal: str, scenario: Scenario, made_by: list[set[str]]) -> None:
    """Check the reveal counts, per key point, the on-time answers whose feedback made it."""
    assert scenario.rubric is not None
    assert f"How the group did ({len(made_by)} answers on time):" in reveal
    for point in scenario.rubric.key_points:
        count = sum(point.id in made for made in made_by)
        assert f"{count}/{len(made_by)} — {point.point}" in reveal


async def todays_scenario(app: App) -> Scenario:
    """Return the scenario of the newest round."""
    async with app.db.transaction() as session:
        round_ = await session.scalar(select_newest_round())
    assert round_ is not None
    scenario = app.services.ctx.catalog.get(round_.scenario_id)
    assert scenario is not None
    assert scenario.rubric is not None
    return scenario


def select_newest_round() -> Any:
    from sqlalchemy import select

    return select(Round).order_by(Round.local_date.desc()).limit(1)


# -- Slack ----------------------------------------------------------------------------------

SLACK_CHANNEL = "C0STUDY"
SLACK_USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0EVE": "eve"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("U0ADMIN", "ada", admin=True)
        for user_id, name in SLACK_USERS.items():
            fake.add_user(user_id, name)
        yield fake


@asynccontextmanager
async def slack_running(url: str, fake: FakeSlack, clock: ManualClock) -> AsyncIterator[App]:
    configured = Settings.model_validate(
        {
            "database": {"url": url},
            "slack": {
                "bot_token": fake.bot_token,
                "app_token": fake.app_token,
                "mode": "socket",
                "api_url": fake.api_url,
                # A week plays in seconds of real time, and reactions keep a real-time pace.
                "reactions_per_minute": 60_000,
            },
        }
    )
    app = await build_app(configured, clock)
    runtime = SlackRuntime(configured.slack, app.services)
    try:
        await runtime.start()
        yield app
    finally:
        await runtime.stop()
        await app.close()


async def slack_command(fake: FakeSlack, text: str, user: str) -> str:
    """Run /prep as a member and return what the bot answered, as JSON text."""
    before = len(fake.responses)
    form = slash_command(
        text,
        user_id=user,
        user_name=SLACK_USERS.get(user, "ada"),
        channel_id=SLACK_CHANNEL,
        response_url=fake.response_url(),
        channel_name="study",
    )
    await fake.wait_ack(await fake.send_envelope("slash_commands", form))
    await fake.wait_for(lambda: len(fake.responses) > before)
    return json.dumps(fake.responses[before][1], ensure_ascii=False)


async def slack_reply(fake: FakeSlack, user: str, text: str, thread: str) -> str:
    """Post a member's reply in the thread (in the fake's history, then as an event)."""
    ts = next_ts()
    fake.add_message(SLACK_CHANNEL, user=user, text=text, thread_ts=thread, ts=ts)
    event = message_event(SLACK_CHANNEL, user, text, ts, thread_ts=thread)
    from tests.slack_fake import event_callback

    await fake.wait_ack(await fake.send_envelope("events_api", event_callback(event)))
    return ts


async def slack_reacted(fake: FakeSlack, replies: list[str], name: str) -> None:
    """Wait until each reply carries exactly the bot's reaction ``name``."""
    await fake.wait_for(
        lambda: all(fake.reactions_on(SLACK_CHANNEL, ts) == [name] for ts in replies)
    )


async def test_a_week_of_feedback_on_slack(database_url: str, slack: FakeSlack):
    clock = ManualClock(START)
    async with slack_running(database_url, slack, clock) as app:
        assert "now a study group" in await slack_command(
            slack, "subscribe 09:00 UTC daily", "U0ADMIN"
        )
        assert "off" in await slack_command(slack, "feedback off", "U0EVE")
        seen: set[str] = set()
        for day in range(DAYS):
            clock.set(START + timedelta(days=day))
            await slack_command(slack, "post-now", "U0ADMIN")
            thread = slack.calls_to("chat.postMessage")[-1].params
            assert not thread.get("thread_ts")
            thread_ts = slack.messages[SLACK_CHANNEL][-1]["ts"]
            scenario = await todays_scenario(app)
            seen.add(scenario.id)
            text, aimed = strong_answer(scenario, day)
            alice = await slack_reply(slack, "U0ALICE", text, thread_ts)
            bob = await slack_reply(slack, "U0BOB", WEAK_ANSWER, thread_ts)
            eve = await slack_reply(slack, "U0EVE", text, thread_ts)
            await slack_reacted(slack, [alice, bob, eve], "white_check_mark")

            ephemerals = len(slack.ephemerals)
            clock.advance(timedelta(hours=8))
            await slack_command(slack, "reveal-now", "U0ADMIN")
            await app.services.rounds.feedback.settle()
            reveal = slack.calls_to("chat.postMessage")[-1].params
            assert reveal["thread_ts"] == thread_ts
            feedback = {e["user"]: e for e in slack.ephemerals[ephemerals:]}
            assert set(feedback) == {"U0ALICE", "U0BOB"}, "eve turned the messages off"
            for entry in feedback.values():
                assert (entry["channel"], entry["thread_ts"]) == (SLACK_CHANNEL, thread_ts)

            alice_made = made_in(feedback["U0ALICE"]["text"], scenario)
            assert aimed <= alice_made
            made, missed = point_lines(scenario, alice_made)
            for line in made + missed:
                assert escape(line) in feedback["U0ALICE"]["text"]
            assert made_in(feedback["U0BOB"]["text"], scenario) == set()
            assert "0 of" in feedback["U0BOB"]["text"]
            reveal_text = json.dumps(reveal["blocks"], ensure_ascii=False)
            assert "alice" not in reveal_text.split("How the group did")[1].split("Answered")[0]
            assert_group_line(
                reveal_text.replace("\\n", "\n"),
                scenario.model_copy(update={"rubric": escape_rubric(scenario)}),
                [alice_made, set(), alice_made],
            )

            carol = await slack_reply(slack, "U0CAROL", text, thread_ts)
            await slack_reacted(slack, [carol], "clock4")

            again = await slack_command(slack, f"feedback {scenario.id}", "U0EVE")
            assert made_in(json.loads(again)["text"], scenario) == alice_made

        assert len(seen) == DAYS, "a week of different scenarios"
        board = await slack_command(slack, "leaderboard", "U0ALICE")
        assert "alice* — 7 on time" in board
        assert "bob* — 7 on time · 0 points" in board


def escape_rubric(scenario: Scenario) -> Any:
    """Return the rubric with point texts escaped as Slack's mrkdwn shows them."""
    assert scenario.rubric is not None
    points = tuple(
        p.model_copy(update={"point": escape(p.point)}) for p in scenario.rubric.key_points
    )
    return scenario.rubric.model_copy(update={"key_points": points})


# -- Discord --------------------------------------------------------------------------------

GUILD, ADMIN, ALICE, BOB, CAROL, DAVE, EVE = 100, 501, 502, 503, 504, 505, 506
TEXT = 2000


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=500)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        for user_id, name in (
            (ALICE, "alice"),
            (BOB, "bob"),
            (CAROL, "carol"),
            (DAVE, "dave"),
            (EVE, "eve"),
        ):
            server.add_member(GUILD, user_id, name)
        server.add_text_channel(GUILD, TEXT, "study")
        server.closed_dms.add(DAVE)
        with server.patch_discord():
            yield server


@asynccontextmanager
async def discord_running(url: str, fake: FakeDiscord, clock: ManualClock) -> AsyncIterator[App]:
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
    app = await build_app(configured, clock)
    runtime = DiscordRuntime(configured.discord, app.services)
    try:
        await runtime.start(timeout=30)
        yield app
    finally:
        await runtime.stop()
        await app.close()


async def discord_command(
    fake: FakeDiscord, user: int, name: str, options: list[dict[str, Any]] | None = None
) -> str:
    return await fake.answered_command(GUILD, TEXT, user, f"prep {name}", options)


def strings(data: Any) -> str:
    """Return every string inside a JSON value, one per line."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        return "\n".join(strings(v) for v in data.values())
    if isinstance(data, list):
        return "\n".join(strings(v) for v in data)
    return ""


def dm_texts(fake: FakeDiscord, user: int) -> list[str]:
    return [json.dumps(m["embeds"], ensure_ascii=False) for m in fake.dms_to(user)]


async def discord_reacted(
    fake: FakeDiscord, thread_id: int, replies: list[dict[str, Any]], emoji: str
) -> None:
    """Wait until each reply carries exactly the bot's reaction ``emoji``."""
    await fake.wait_for(
        lambda: all(fake.reactions_on(thread_id, m["id"]) == [emoji] for m in replies)
    )


async def test_a_week_of_feedback_on_discord(database_url: str, discord_fake: FakeDiscord):
    fake = discord_fake
    clock = ManualClock(START)
    async with discord_running(database_url, fake, clock) as app:
        assert "now a study group" in await discord_command(
            fake, ADMIN, "subscribe", [{"name": "time", "value": "09:00"}]
        )
        assert "off" in await discord_command(
            fake, EVE, "feedback", [{"name": "messages", "value": "off"}]
        )
        for day in range(DAYS):
            clock.set(START + timedelta(days=day))
            await discord_command(fake, ADMIN, "post-now")
            thread_id = max(t for t, th in fake.threads.items() if th["parent_id"] == str(TEXT))
            scenario = await todays_scenario(app)
            text, aimed = strong_answer(scenario, day)
            replies = {
                who: await fake.member_message(thread_id, who, said, guild_id=GUILD)
                for who, said in (
                    (ALICE, text),
                    (BOB, WEAK_ANSWER),
                    (DAVE, text),
                    (EVE, WEAK_ANSWER),
                )
            }
            await discord_reacted(fake, thread_id, list(replies.values()), "✅")

            dms = {who: len(fake.dms_to(who)) for who in (ALICE, BOB, DAVE, EVE)}
            clock.advance(timedelta(hours=8))
            await discord_command(fake, ADMIN, "reveal-now")
            await app.services.rounds.feedback.settle()
            reveal = json.dumps(
                [m for m in fake.messages[thread_id] if m["author"]["id"] == str(fake.bot_user_id)][
                    -1
                ]["embeds"],
                ensure_ascii=False,
            )
            alice_dm = dm_texts(fake, ALICE)[dms[ALICE] :]
            bob_dm = dm_texts(fake, BOB)[dms[BOB] :]
            assert len(alice_dm) == 1
            assert len(bob_dm) == 1
            assert dm_texts(fake, EVE)[dms[EVE] :] == [], "eve turned the messages off"
            assert fake.dms_to(DAVE) == [], "dave's DMs are closed"
            alice_made = made_in(json.loads(alice_dm[0])[0]["description"], scenario)
            assert aimed <= alice_made
            made, missed = point_lines(scenario, alice_made)
            for line in made + missed:
                assert line in json.loads(alice_dm[0])[0]["description"]
            assert made_in(json.loads(bob_dm[0])[0]["description"], scenario) == set()
            assert_group_line(
                json.loads(reveal)[0]["fields"][-1]["name"]
                + "\n"
                + json.loads(reveal)[0]["fields"][-1]["value"],
                scenario,
                [alice_made, set(), alice_made, set()],
            )

            dave_reads = strings(json.loads(await discord_command(fake, DAVE, "feedback")))
            assert made_in(dave_reads, scenario) == alice_made

            carol = await fake.member_message(thread_id, CAROL, text, guild_id=GUILD)
            await discord_reacted(fake, thread_id, [carol], "🕓")

        board = await discord_command(
            fake, ALICE, "leaderboard", [{"name": "period", "value": "all"}]
        )
        assert "@alice" in board
        assert "points" in board
