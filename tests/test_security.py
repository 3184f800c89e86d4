"""Security: replayed, stale and refused Slack requests, requests from another workspace,
admin-only commands, and secrets and members' words kept out of logs.

Already covered elsewhere, and not repeated here: unsigned, forged (wrong signature, wrong
secret) and 6-minute-old requests get 401 (tests/platforms/slack/test_slack_app.py), and a
non-admin's ``subscribe`` is refused on Slack and Discord (both app tests); secrets absent
from a real ``prepbot run``'s output and from doctor (tests/test_operations.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import discord
import pytest
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.observability import configure_logging
from prepbot.platforms.discord.adapter import DiscordRuntime
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.settings import Settings
from prepbot.store.models import Answer, Community, Reply, Round, Subscription
from tests.discord_fake import FakeDiscord
from tests.slack_fake import (
    FakeSlack,
    event_callback,
    message_event,
    next_ts,
    sign,
    slash_command,
)

SLACK_BOT = "xoxb-111-222-SECRETslackbot"
SLACK_APP = "xapp-1-A1-333-SECRETslackapp"
SIGNING = "SECRETsigning8f742231b10e8888ab"
DISCORD_TOKEN = "MTAwMQ.SECRETdiscord.token"
DB_PASSWORD = "SECRETdbpassword"
WRONG_SLACK = "xoxb-SECRETwrongslacktoken"
WRONG_DISCORD = "SECRETwrong.discord.token"
# Each run's configured secrets; the wrong tokens are configured in the runs that use them.
SECRETS = (SLACK_BOT, SLACK_APP, SIGNING, DISCORD_TOKEN, DB_PASSWORD, WRONG_SLACK, WRONG_DISCORD)
CHANNEL = "C0STUDY"
GUILD, OWNER, ADMIN, ALICE, TEXT = 100, 500, 501, 502, 2000
ADMIN_COMMANDS = (
    "subscribe",
    "schedule 10:00",
    "pause",
    "resume",
    "unsubscribe",
    "status",
    "post-now",
    "reveal-now",
)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP) as fake:
        fake.add_user("U0ADMIN", "ada", admin=True)
        fake.add_user("U0ALICE", "alice")
        fake.messages.setdefault(CHANNEL, [])
        yield fake


def slack_settings(url: str, fake: FakeSlack, mode: str = "http", **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "slack": {
                "bot_token": fake.bot_token,
                "app_token": fake.app_token,
                "signing_secret": SIGNING,
                "mode": mode,
                "api_url": fake.api_url,
                "http_host": "127.0.0.1",
                "http_port": 0,
            }
            | extra,
        }
    )


@asynccontextmanager
async def slack_running(
    settings: Settings, clock: ManualClock | None = None
) -> AsyncIterator[tuple[App, SlackRuntime]]:
    app = await build_app(settings, clock or ManualClock(datetime.now(UTC)))
    runtime = SlackRuntime(settings.slack, app.services)
    try:
        await runtime.start()
        yield app, runtime
    finally:
        await runtime.stop()
        await app.close()


async def post(port: int, body: bytes, content_type: str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/slack/events",
            data=body,
            headers={"Content-Type": content_type, **headers},
        ) as response,
    ):
        await response.read()
        return response.status


def command_body(fake: FakeSlack, text: str, user: str, name: str) -> bytes:
    form = slash_command(
        text, user_id=user, user_name=name, channel_id=CHANNEL, response_url=fake.response_url()
    )
    return urlencode(form).encode()


async def count(app: App, model: Any) -> int:
    async with app.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_replayed_signed_request_changes_nothing_twice(database_url: str, slack: FakeSlack):
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        port = runtime.port
        subscribe = command_body(slack, "subscribe 09:00 UTC daily", "U0ADMIN", "ada")
        headers = sign(subscribe, SIGNING)
        assert await post(port, subscribe, "application/x-www-form-urlencoded", headers) == 200
        await slack.wait_for(lambda: len(slack.responses) == 1)
        post_now = command_body(slack, "post-now", "U0ADMIN", "ada")
        assert (
            await post(port, post_now, "application/x-www-form-urlencoded", sign(post_now, SIGNING))
            == 200
        )
        await slack.wait_for(lambda: len(slack.responses) == 2)
        thread = slack.messages[CHANNEL][0]["ts"]

        # An attacker (or a proxy) sends the very same signed bytes again within the window.
        replayed = await post(port, subscribe, "application/x-www-form-urlencoded", headers)
        assert replayed == 200  # a valid signature: Slack's own retries look exactly like this
        await slack.wait_for(lambda: len(slack.responses) == 3)
        assert "already a study group" in json.dumps(slack.responses[2][1])
        assert await count(app, Subscription) == 1

        event = message_event(CHANNEL, "U0ALICE", "Ring all-reduce.", next_ts(), thread_ts=thread)
        body = json.dumps(event_callback(event)).encode()
        signed = sign(body, SIGNING)
        for _ in range(3):
            assert await post(port, body, "application/json", signed) == 200
        assert await count(app, Answer) == 1
        assert await count(app, Reply) == 1
        async with app.db.transaction() as session:
            assert await session.scalar(select(Answer.text)) == "Ring all-reduce."

        # The replayed post-now posts nothing new: one round, one question.
        assert (
            await post(port, post_now, "application/x-www-form-urlencoded", sign(post_now, SIGNING))
            == 200
        )
        await slack.wait_for(lambda: len(slack.responses) == 4)
        assert await count(app, Round) == 1
        assert len([m for m in slack.messages[CHANNEL] if m.get("bot_id")]) == 1


# A future timestamp shrinks towards "now" while the request is in flight (and int() truncates up
# to a second), so the future case sits well past the five-minute line, not one second past it.
@pytest.mark.parametrize(
    "age", [5 * 60 + 1, 10 * 60, -(5 * 60 + 30)], ids=["5m1s", "10m", "future-5m30s"]
)
async def test_a_request_signed_more_than_five_minutes_away_is_rejected(
    database_url: str, slack: FakeSlack, age: int
):
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        old = int(time.time()) - age
        subscribe = command_body(slack, "subscribe", "U0ADMIN", "ada")
        headers = sign(subscribe, SIGNING, timestamp=old)  # correctly signed, but captured long ago
        assert (
            await post(runtime.port, subscribe, "application/x-www-form-urlencoded", headers) == 401
        )
        event = message_event(CHANNEL, "U0ALICE", "hi", next_ts(), thread_ts=next_ts())
        body = json.dumps(event_callback(event)).encode()
        assert await post(runtime.port, body, "application/json", sign(body, SIGNING, old)) == 401
        await asyncio.sleep(0.2)
        assert await count(app, Subscription) == 0
        assert slack.responses == []


async def test_every_admin_command_is_refused_to_a_member_on_slack(
    database_url: str, slack: FakeSlack
):
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        body = command_body(slack, "subscribe 09:00 UTC daily", "U0ADMIN", "ada")
        await post(runtime.port, body, "application/x-www-form-urlencoded", sign(body, SIGNING))
        await slack.wait_for(lambda: len(slack.responses) == 1)
        for n, text in enumerate(ADMIN_COMMANDS, start=2):
            body = command_body(slack, text, "U0ALICE", "alice")
            await post(runtime.port, body, "application/x-www-form-urlencoded", sign(body, SIGNING))
            await slack.wait_for(lambda: len(slack.responses) >= n)  # noqa: B023 (awaited here)
            answer = json.dumps(slack.responses[-1][1])
            assert "Only admins" in answer, text
            assert '"response_type": "ephemeral"' in answer
        async with app.db.transaction() as session:
            group = await session.scalar(select(Subscription))
        assert group is not None
        assert (group.active, group.paused, group.post_at) == (True, False, "09:00")
        assert await count(app, Round) == 0
        assert not [m for m in slack.messages[CHANNEL] if m.get("bot_id")]


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=DISCORD_TOKEN) as fake:
        fake.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        fake.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        fake.add_member(GUILD, ALICE, "alice")
        fake.add_text_channel(GUILD, TEXT, "study")
        with fake.patch_discord():
            yield fake


def discord_settings(url: str, fake: FakeDiscord, token: str = DISCORD_TOKEN) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "discord": {
                "token": token,
                "application_id": fake.application_id,
                "api_url": fake.api_base,
                "gateway_url": fake.gateway_url,
                "guild_ids": [GUILD],
            },
        }
    )


@asynccontextmanager
async def discord_running(settings: Settings) -> AsyncIterator[tuple[App, DiscordRuntime]]:
    app = await build_app(settings, ManualClock(datetime.now(UTC)))
    runtime = DiscordRuntime(settings.discord, app.services)
    try:
        await runtime.start(timeout=30)
        yield app, runtime
    finally:
        await runtime.stop()
        await app.close()


async def discord_command(
    fake: FakeDiscord, user: int, name: str, options: list[dict[str, Any]] | None = None
) -> str:
    return await fake.answered_command(GUILD, TEXT, user, f"prep {name}", options)


async def test_every_admin_command_is_refused_to_a_member_on_discord(
    database_url: str, discord_fake: FakeDiscord
):
    async with discord_running(discord_settings(database_url, discord_fake)) as (app, _):
        assert "now a study group" in await discord_command(discord_fake, ADMIN, "subscribe")
        for text in ADMIN_COMMANDS:
            name, *time = text.split()
            options = [{"name": "time", "value": time[0]}] if time else []
            answer = await discord_command(discord_fake, ALICE, name, options)
            assert "Only admins" in answer, name
            assert '"flags": 64' in answer  # ephemeral: only the member sees the refusal
        async with app.db.transaction() as session:
            group = await session.scalar(select(Subscription))
        assert group is not None
        assert (group.active, group.paused) == (True, False)
        assert await count(app, Round) == 0


# -- secrets and logs ---------------------------------------------------------------------------


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Log at DEBUG through production's own set-up (redaction included) into a buffer.

    ``configure_logging`` keeps the chatty libraries at INFO; here they log at DEBUG too, the
    most an operator could turn on.
    """
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    noisy = ("discord", "slack_bolt", "slack_sdk", "apscheduler", "aiohttp", "sqlalchemy")
    levels = {name: logging.getLogger(name).level for name in noisy}
    buffer = io.StringIO()
    configure_logging("text", "debug", SECRETS)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def with_password(url: str) -> str:
    """Put the secret password into a PostgreSQL URL (the test server trusts local users)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


async def test_no_secret_reaches_any_log_line_even_when_things_fail(
    database_url: str, slack: FakeSlack, discord_fake: FakeDiscord, debug_log: io.StringIO
):
    url = with_password(database_url)
    # Slack, Socket Mode (the app token opens the connection), then failures.
    async with slack_running(slack_settings(url, slack, mode="socket")) as (app, _):
        await slack.wait_for_socket()
        from prepbot.core.commands import ScheduleChange
        from prepbot.core.events import Place
        from prepbot.scheduling import RoundScheduler

        group = await app.services.admin.subscribe(
            Place("slack", slack.team_id, CHANNEL), ScheduleChange()
        )
        slack.fail_next("chat.postMessage", status=429, retry_after=0)
        assert await app.services.rounds.post_round(group.id, datetime.now(UTC).date())
        thread = slack.messages[CHANNEL][0]["ts"]
        envelope = await slack.send_envelope(
            "events_api",
            event_callback(message_event(CHANNEL, "U0ALICE", "hi", next_ts(), thread_ts=thread)),
        )
        await slack.wait_ack(envelope)
        slack.fail_next("chat.postMessage", status=500)  # posts are not resent by the client
        scheduler = RoundScheduler(app.services)
        async with app.db.transaction() as session:
            round_ = await session.scalar(select(Round))
            assert round_ is not None
            round_.reveal_due_at = datetime(2020, 1, 1, tzinfo=UTC)  # overdue
        leases = ManualClock(datetime.now(UTC))
        app.services.ctx.lease_clock = leases
        await scheduler.tick()  # logs the failure with its traceback; repaired once the
        leases.advance(app.services.ctx.lease * 2)  # failed reveal's lease has run out
        await scheduler.tick()
        async with app.db.transaction() as session:
            assert await session.scalar(select(Round.reveal_message_id)) is not None
        logging.getLogger("prepbot.test").exception("a failure", exc_info=RuntimeError(SLACK_BOT))
    wrong = slack_settings(url, slack, mode="socket", bot_token=WRONG_SLACK)
    with pytest.raises(SlackApiError):
        async with slack_running(wrong):
            pass

    # Discord: a rate limit, a refused post, a wrong token.
    async with discord_running(discord_settings(url, discord_fake)) as (app, _):
        discord_fake.fail_next("POST", rf"/channels/{TEXT}/messages", retry_after=0.1)
        await discord_command(discord_fake, ADMIN, "subscribe")
        await discord_command(discord_fake, ADMIN, "post-now")
        discord_fake.fail_next("POST", r"/channels/\d+/messages", status=403, code=50013)
        await discord_command(discord_fake, ADMIN, "reveal-now")
    with pytest.raises(discord.LoginFailure):
        async with discord_running(discord_settings(url, discord_fake, WRONG_DISCORD)):
            pass

    output = debug_log.getvalue()
    assert "rate limited" in output or "ratelimited" in output  # the failures were logged
    assert "Traceback" in output
    assert "DEBUG" in output
    leaks = [line for line in output.splitlines() if "SECRET" in line]
    assert not leaks, leaks[:3]


# -- refused requests: no member's words in the logs, no 500 ------------------------------------

MEMBER_TEXT = "my-private-answer-ZEBRA-42"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=deadbeef"},
        "wrong-secret",
        "stale",
    ],
    ids=["unsigned", "bad-signature", "wrong-secret", "stale"],
)
async def test_a_refused_request_is_logged_without_what_the_member_wrote(
    database_url: str,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str] | str,
):
    caplog.set_level(logging.DEBUG)  # before the app is built: bolt copies the root's level
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        event = message_event(CHANNEL, "U0ALICE", MEMBER_TEXT, next_ts(), thread_ts=next_ts())
        body = json.dumps(event_callback(event)).encode()
        if headers == "wrong-secret":
            headers = sign(body, "not-the-signing-secret")
        elif headers == "stale":
            headers = sign(body, SIGNING, timestamp=int(time.time()) - 10 * 60)
        assert isinstance(headers, dict)
        caplog.clear()
        assert await post(runtime.port, body, "application/json", headers) == 401
        assert await count(app, Answer) == 0
    leaks = [r for r in caplog.records if MEMBER_TEXT in r.getMessage()]
    assert not leaks, leaks
    refusals = [r for r in caplog.records if r.levelno >= logging.INFO and "refused" in r.message]
    assert len(refusals) <= 1
    assert all("\n" not in r.getMessage() for r in refusals)


@pytest.mark.parametrize(
    "timestamp",
    ["", "not-a-number", "1e9", "-1", " 1700000000", "9" * 5000, "17000000000000000000000"],
    ids=["empty", "words", "exponent", "negative", "space", "5000-digits", "huge"],
)
async def test_a_malformed_timestamp_gets_401_and_no_traceback(
    database_url: str, slack: FakeSlack, caplog: pytest.LogCaptureFixture, timestamp: str
):
    caplog.set_level(logging.DEBUG)
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        body = command_body(slack, "subscribe", "U0ADMIN", "ada")
        headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"}
        caplog.clear()
        status = await post(runtime.port, body, "application/x-www-form-urlencoded", headers)
        assert status == 401
        assert await count(app, Subscription) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "event_callback", "event": ', "application/json"),
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (b"\xff\xfe not utf-8", "application/x-www-form-urlencoded"),
    ],
    ids=["broken-json", "broken-payload", "not-utf-8"],
)
async def test_an_unreadable_unsigned_body_gets_401_and_no_traceback(
    database_url: str,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    content_type: str,
):
    caplog.set_level(logging.DEBUG)
    async with slack_running(slack_settings(database_url, slack)) as (_, runtime):
        assert runtime.port is not None
        caplog.clear()
        headers = {"X-Slack-Request-Timestamp": str(int(time.time()))}
        assert await post(runtime.port, body, content_type, headers) == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- requests from another workspace ------------------------------------------------------------

OTHER_TEAM = "T0OTHER"


async def command_from(
    port: int, fake: FakeSlack, text: str, user: str, team_id: str
) -> tuple[int, str]:
    """Send a signed /prep from a workspace; return the status and the acknowledgement's body."""
    form = slash_command(
        text,
        user_id=user,
        user_name=user,
        channel_id=CHANNEL,
        team_id=team_id,
        response_url=fake.response_url(),
    )
    body = urlencode(form).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/slack/events",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body, SIGNING)},
        ) as response,
    ):
        return response.status, await response.text()


async def test_a_command_from_another_workspace_changes_nothing_here(
    database_url: str, slack: FakeSlack
):
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        for text in ("subscribe 09:00 UTC daily", "post-now", "help"):
            status, ack = await command_from(runtime.port, slack, text, "U0ADMIN", OTHER_TEAM)
            assert status == 200, text
            answer = json.loads(ack)
            assert answer["response_type"] == "ephemeral"
            assert "another Slack workspace" in answer["text"]
        await asyncio.sleep(0.2)  # a lazy listener that wrongly ran would have answered by now
        assert await count(app, Community) == 0
        assert await count(app, Subscription) == 0
        assert not slack.calls_to("chat.postMessage")
        assert slack.responses == []

        # The same commands from this bot's own workspace still work.
        status, _ = await command_from(
            runtime.port, slack, "subscribe 09:00 UTC daily", "U0ADMIN", slack.team_id
        )
        assert status == 200
        await slack.wait_for(lambda: len(slack.responses) == 1)
        assert "now a study group" in json.dumps(slack.responses[0][1])
        async with app.db.transaction() as session:
            assert (await session.scalars(select(Community.external_id))).all() == [slack.team_id]


async def test_a_reply_from_another_workspace_is_not_taken_as_an_answer(
    database_url: str, slack: FakeSlack
):
    async with slack_running(slack_settings(database_url, slack)) as (app, runtime):
        assert runtime.port is not None
        port = runtime.port
        for n, text in enumerate(("subscribe 09:00 UTC daily", "post-now"), start=1):
            await command_from(port, slack, text, "U0ADMIN", slack.team_id)
            await slack.wait_for(lambda: len(slack.responses) == n)  # noqa: B023 (awaited here)
        thread = slack.messages[CHANNEL][0]["ts"]
        for team, text in ((OTHER_TEAM, "from elsewhere"), (slack.team_id, "from here")):
            event = message_event(CHANNEL, "U0ALICE", text, next_ts(), thread_ts=thread, team=team)
            body = json.dumps(event_callback(event, team_id=team)).encode()
            assert await post(port, body, "application/json", sign(body, SIGNING)) == 200
        async with app.db.transaction() as session:
            assert (await session.scalars(select(Answer.text))).all() == ["from here"]
        assert await count(app, Community) == 1


async def test_a_command_from_another_workspace_is_refused_over_socket_mode(
    database_url: str, slack: FakeSlack
):
    async with slack_running(slack_settings(database_url, slack, mode="socket")) as (app, _):
        await slack.wait_for_socket()
        form = slash_command(
            "subscribe",
            user_id="U0ADMIN",
            user_name="ada",
            channel_id=CHANNEL,
            team_id=OTHER_TEAM,
            response_url=slack.response_url(),
        )
        ack = await slack.wait_ack(await slack.send_envelope("slash_commands", form))
        assert "another Slack workspace" in json.dumps(ack)
        await asyncio.sleep(0.2)
        assert await count(app, Subscription) == 0
        assert slack.responses == []
