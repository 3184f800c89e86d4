"""The Slack study group end to end: real slack-bolt over loopback against the fake Slack."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import func, select

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.text import local_time
from prepbot.platforms.pacing import Backlog
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.platforms.slack.blocks import escape
from prepbot.settings import Settings
from prepbot.store.models import Answer, Member, Round, Subscription
from tests.slack_fake import (
    FakeSlack,
    event_callback,
    message_changed_event,
    message_deleted_event,
    message_event,
    next_ts,
    sign,
    slash_command,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0STUDY"
USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0ADMIN": "ada"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as started:
        for user_id, name in USERS.items():
            started.add_user(user_id, name, admin=user_id == "U0ADMIN")
        yield started


def settings(url: str, fake: FakeSlack, mode: str) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "slack": {
                "bot_token": fake.bot_token,
                "app_token": fake.app_token,
                "signing_secret": SECRET,
                "mode": mode,
                "api_url": fake.api_url,
                "http_host": "127.0.0.1",
                "http_port": 0,
            },
        }
    )


@asynccontextmanager
async def running(url: str, fake: FakeSlack, mode: str) -> AsyncIterator[tuple[App, SlackRuntime]]:
    configured = settings(url, fake, mode)
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    runtime = SlackRuntime(configured.slack, app.services)
    try:
        await runtime.start()
        yield app, runtime
    finally:
        await runtime.stop()
        await app.close()


def prep_form(fake: FakeSlack, text: str, user: str) -> dict[str, str]:
    """Return the fields Slack sends when ``user`` types ``/prep text`` in the study channel."""
    return slash_command(
        text,
        user_id=user,
        user_name=USERS[user],
        channel_id=CHANNEL,
        response_url=fake.response_url(),
        channel_name="study",
    )


class HttpSlack:
    """Sends what Slack sends to the HTTP endpoint, signed like Slack signs it."""

    def __init__(self, session: aiohttp.ClientSession, port: int, fake: FakeSlack) -> None:
        self.session, self.url, self.fake = session, f"http://127.0.0.1:{port}/slack/events", fake

    async def post(self, body: bytes, content_type: str, headers: dict[str, str]) -> int:
        async with self.session.post(
            self.url, data=body, headers={"Content-Type": content_type, **headers}
        ) as response:
            await response.read()
            return response.status

    async def event(
        self, event: dict[str, Any], *, retry: int = 0, event_id: str | None = None
    ) -> int:
        body = json.dumps(event_callback(event, event_id=event_id)).encode()
        headers = sign(body, SECRET)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(body, "application/json", headers)

    async def command(self, text: str, user: str) -> int:
        body = urlencode(prep_form(self.fake, text, user)).encode()
        return await self.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))

    async def open_round(self, schedule: str = "09:00 UTC daily") -> str:
        """Subscribe the study channel as its admin, post today's round; return its thread."""
        answered = len(self.fake.responses)
        await self.command(f"subscribe {schedule}", "U0ADMIN")
        await reply_text(self.fake, answered)
        await self.command("post-now", "U0ADMIN")
        await reply_text(self.fake, answered + 1)
        return str(self.fake.messages[CHANNEL][0]["ts"])


class SocketSlack:
    """Sends the same things as Socket Mode envelopes and waits for each acknowledgement."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake

    async def event(
        self, event: dict[str, Any], *, retry: int = 0, event_id: str | None = None
    ) -> int:
        envelope = await self.fake.send_envelope(
            "events_api", event_callback(event, event_id=event_id), retry_attempt=retry
        )
        await self.fake.wait_ack(envelope)
        return 200

    async def command(self, text: str, user: str) -> int:
        form = prep_form(self.fake, text, user)
        await self.fake.wait_ack(await self.fake.send_envelope("slash_commands", form))
        return 200


async def reply_text(fake: FakeSlack, before: int) -> str:
    """Wait for the next response to a /prep command and return its text and blocks."""
    await fake.wait_for(lambda: len(fake.responses) > before, timeout=10)
    _, body = fake.responses[before]
    return json.dumps(body, ensure_ascii=False)


async def study_group_loop(app: App, fake: FakeSlack, slack: HttpSlack | SocketSlack) -> None:
    """Subscribe, post, three members answer, reveal, leaderboard: assert what users see."""
    responses = len(fake.responses)
    assert await slack.command("subscribe 09:00 UTC daily", "U0ADMIN") == 200
    assert "now a study group" in await reply_text(fake, responses)

    responses = len(fake.responses)
    await slack.command("post-now", "U0ADMIN")
    await reply_text(fake, responses)
    (question,) = fake.calls_to("chat.postMessage")
    assert question.params["channel"] == CHANNEL
    thread = fake.messages[CHANNEL][0]["ts"]

    alice_ts, bob_ts, carol_ts = next_ts(), next_ts(), next_ts()
    alice = message_event(CHANNEL, "U0ALICE", "Ring all-reduce.", alice_ts, thread_ts=thread)
    for attempt in range(3):  # Slack retried it twice: same event, same event_id
        assert await slack.event(alice, retry=attempt, event_id="Ev0ALICE") == 200
    await slack.event(message_event(CHANNEL, "U0BOB", "Parameter server", bob_ts, thread_ts=thread))
    await slack.event(
        message_changed_event(
            CHANNEL,
            "U0BOB",
            "Ring all-reduce, 2N per GPU",
            bob_ts,
            thread_ts=thread,
            edited_ts=next_ts(),
        )
    )
    await slack.event(message_event(CHANNEL, "U0CAROL", "I think...", carol_ts, thread_ts=thread))
    await slack.event(message_deleted_event(CHANNEL, carol_ts, thread_ts=thread, user="U0CAROL"))

    async with app.db.transaction() as session:
        answers = dict(
            (
                await session.execute(
                    select(Member.external_id, Answer.text).join(
                        Answer, Answer.member_id == Member.id
                    )
                )
            ).all()
        )
    assert answers == {"U0ALICE": "Ring all-reduce.", "U0BOB": "Ring all-reduce, 2N per GPU"}

    responses = len(fake.responses)
    await slack.command("reveal-now", "U0ADMIN")
    await reply_text(fake, responses)
    reveal = fake.calls_to("chat.postMessage")[-1]
    assert reveal.params["thread_ts"] == thread
    reveal_text = json.dumps(reveal.params["blocks"])
    assert "<@U0ALICE>" in reveal_text
    assert "<@U0BOB>" in reveal_text
    assert "U0CAROL" not in reveal_text
    assert "https://" in reveal_text  # the source credit's link

    responses = len(fake.responses)
    await slack.command("leaderboard", "U0ALICE")
    board = await reply_text(fake, responses)
    assert "1 on time" in board
    assert board.count("1 on time") == 2
    assert "carol" not in board
    assert '"response_type": "in_channel"' in board


async def test_the_study_group_loop_over_http(database_url: str, fake: FakeSlack):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        await study_group_loop(app, fake, HttpSlack(session, runtime.port, fake))


async def test_the_study_group_loop_over_socket_mode(database_url: str, fake: FakeSlack):
    async with running(database_url, fake, "socket") as (app, _):
        await fake.wait_for_socket()
        await study_group_loop(app, fake, SocketSlack(fake))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=deadbeef"},
        "stale",
        "wrong-secret",
    ],
)
async def test_unsigned_wrongly_signed_and_stale_requests_get_401(
    database_url: str, fake: FakeSlack, headers: dict[str, str] | str
):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        form = slash_command(
            "subscribe",
            user_id="U0ADMIN",
            user_name="ada",
            channel_id=CHANNEL,
            response_url=fake.response_url(),
        )
        body = urlencode(form).encode()
        if headers == "stale":
            headers = sign(body, SECRET, timestamp=int(time.time()) - 6 * 60)
        elif headers == "wrong-secret":
            headers = sign(body, "not-the-secret")
        assert isinstance(headers, dict)
        assert await slack.post(body, "application/x-www-form-urlencoded", headers) == 401
        await asyncio.sleep(0.2)
        async with app.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(Subscription)) == 0
        assert fake.responses == []


async def test_a_rate_limited_post_is_retried_and_posted_once(database_url: str, fake: FakeSlack):
    async with (
        running(database_url, fake, "http") as (_app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        responses = len(fake.responses)
        await slack.command("subscribe 09:00 UTC daily", "U0ADMIN")
        await reply_text(fake, responses)
        fake.fail_next("chat.postMessage", status=429, retry_after=1)
        responses = len(fake.responses)
        await slack.command("post-now", "U0ADMIN")
        assert "Posted today" in await reply_text(fake, responses)
        assert len(fake.calls_to("chat.postMessage")) == 2
        assert len(fake.messages[CHANNEL]) == 1


async def test_prep_is_acknowledged_in_time_while_the_database_is_slow(
    database_url: str, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        real = app.db.transaction

        @asynccontextmanager
        async def slow_transaction() -> AsyncIterator[Any]:
            await asyncio.sleep(4)  # longer than Slack waits for an acknowledgement
            async with real() as db:
                yield db

        monkeypatch.setattr(app.db, "transaction", slow_transaction)
        started = time.monotonic()
        assert await slack.command("leaderboard", "U0ALICE") == 200
        assert time.monotonic() - started < 3
        text = await reply_text(fake, 0)
        assert "not a study group" in text  # the answer still arrives, later


async def test_a_vanished_channel_pauses_only_its_own_group(database_url: str, fake: FakeSlack):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        for channel in (CHANNEL, "C0GONE"):
            form = slash_command(
                "subscribe 09:00 UTC daily",
                user_id="U0ADMIN",
                user_name="ada",
                channel_id=channel,
                response_url=fake.response_url(),
            )
            body = urlencode(form).encode()
            await slack.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))
        await fake.wait_for(lambda: len(fake.responses) == 2)
        fake.channel_errors["C0GONE"] = "channel_not_found"
        async with app.db.transaction() as db:
            groups = {s.channel_id: s.id for s in (await db.scalars(select(Subscription))).all()}
        today = datetime.now(UTC).date()
        assert await app.services.rounds.post_round(groups["C0GONE"], today) is None
        assert await app.services.rounds.post_round(groups[CHANNEL], today) is not None
        async with app.db.transaction() as db:
            gone = await db.get(Subscription, groups["C0GONE"])
            fine = await db.get(Subscription, groups[CHANNEL])
        assert gone is not None
        assert fine is not None
        assert gone.paused
        assert "channel_not_found" in (gone.paused_reason or "")
        assert not fine.paused
        responses = len(fake.responses)
        form = slash_command(
            "help",
            user_id="U0ADMIN",
            user_name="ada",
            channel_id="C0GONE",
            response_url=fake.response_url(),
        )
        body = urlencode(form).encode()
        await slack.post(body, "application/x-www-form-urlencoded", sign(body, SECRET))
        assert "channel_not_found" in await reply_text(fake, responses)


async def test_only_workspace_admins_run_admin_commands(database_url: str, fake: FakeSlack):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        await slack.command("subscribe", "U0ALICE")
        text = await reply_text(fake, 0)
        assert "Only admins" in text
        assert '"response_type": "ephemeral"' in text
        async with app.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(Subscription)) == 0


def clock_of(app: App) -> ManualClock:
    clock = app.services.ctx.clock
    assert isinstance(clock, ManualClock)
    return clock


async def test_a_demoted_admin_is_refused_and_a_promoted_member_accepted_within_a_minute(
    database_url: str, fake: FakeSlack
):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)

        async def command(text: str, user: str) -> str:
            before = len(fake.responses)
            await slack.command(text, user)
            return await reply_text(fake, before)

        assert "now a study group" in await command("subscribe 09:00 UTC daily", "U0ADMIN")
        assert "Only admins" in await command("pause", "U0ALICE")
        fake.users["U0ADMIN"]["is_admin"] = False  # a workspace owner demotes ada…
        fake.users["U0ALICE"]["is_admin"] = True  # …and makes alice an admin
        clock_of(app).advance(timedelta(seconds=runtime.settings.admin_recheck_seconds + 1))

        assert "Only admins" in await command("pause", "U0ADMIN")
        async with app.db.transaction() as db:
            group = await db.scalar(select(Subscription))
        assert group is not None
        assert not group.paused
        assert "Paused" in await command("pause", "U0ALICE")
        async with app.db.transaction() as db:
            group = await db.scalar(select(Subscription))
        assert group is not None
        assert group.paused


async def test_help_lists_admin_commands_to_admins_only(database_url: str, fake: FakeSlack):
    async with (
        running(database_url, fake, "http") as (_, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        await slack.command("help", "U0ADMIN")
        admin_help = await reply_text(fake, 0)
        await slack.command("help", "U0ALICE")
        member_help = await reply_text(fake, 1)
    for admin_command in ("/prep pause", "/prep post-now", "/prep unsubscribe"):
        assert admin_command in admin_help
        assert admin_command not in member_help
    assert "/prep leaderboard" in member_help


async def test_replies_posted_while_the_bot_was_down_are_picked_up(
    database_url: str, fake: FakeSlack
):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        thread = await slack.open_round()
        await slack.event(message_event(CHANNEL, "U0ALICE", "live", next_ts(), thread_ts=thread))
    # The bot is down; two members reply in the thread meanwhile.
    fake.add_message(CHANNEL, user="U0BOB", text="while you slept", thread_ts=thread)
    fake.add_message(CHANNEL, user="U0CAROL", text="me too", thread_ts=thread)
    async with running(database_url, fake, "http") as (app, runtime):
        async with app.db.transaction() as db:
            names = set(
                (
                    await db.scalars(
                        select(Member.external_id).join(Answer, Answer.member_id == Member.id)
                    )
                ).all()
            )
            rounds = await db.scalar(select(func.count()).select_from(Round))
        assert names == {"U0ALICE", "U0BOB", "U0CAROL"}
        assert rounds == 1
        assert fake.calls_to("conversations.replies")


async def test_prepbot_run_connects_to_slack_and_stops_on_sigterm(
    database_url: str, fake: FakeSlack, tmp_path: Any
):
    import os
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env |= {
        "PREPBOT_DATABASE__URL": database_url,
        "PREPBOT_SLACK__BOT_TOKEN": fake.bot_token,
        "PREPBOT_SLACK__APP_TOKEN": fake.app_token,
        "PREPBOT_SLACK__API_URL": fake.api_url,
    }
    process = await asyncio.create_subprocess_exec(
        "prepbot",
        "run",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await fake.wait_for_socket(timeout=30)
        assert fake.calls_to("auth.test")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    assert fake.bot_token not in (out + err).decode()


async def test_show_and_search_keep_an_open_rounds_insights_hidden_in_the_workspace(
    database_url: str, fake: FakeSlack
):
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        await slack.open_round("09:00 America/Chicago daily calibration")
        async with app.db.transaction() as db:
            open_round = await db.scalar(select(Round))
        assert open_round is not None
        scenario = app.services.ctx.catalog.get(open_round.scenario_id)
        assert scenario is not None
        assert scenario.trap is not None
        secrets = [
            *scenario.insights,
            scenario.trap.answer,
            *(f.question for f in scenario.follow_ups),
        ]

        def quoted(words: str) -> str:
            """Return words as they appear in the JSON of a Slack message."""
            return json.dumps(escape(words[:60]), ensure_ascii=False)[1:-1]

        def hidden(text: str) -> bool:
            return not any(quoted(secret) in text for secret in secrets)

        responses = len(fake.responses)
        await slack.command(f"show {scenario.id}", "U0ALICE")
        shown = await reply_text(fake, responses)
        assert quoted(scenario.prompts[0]) in shown
        assert hidden(shown)  # in the blocks and in the fallback text
        reveal = local_time(open_round.reveal_due_at, "America/Chicago")
        assert f"in <#{CHANNEL}> {reveal}" in shown  # where, and when in the group's time zone

        responses = len(fake.responses)
        await slack.command("search temperature scaling isotonic", "U0BOB")
        assert scenario.id not in await reply_text(fake, responses)  # words of its insights

        responses = len(fake.responses)
        await slack.command("reveal-now", "U0ADMIN")
        await reply_text(fake, responses)
        responses = len(fake.responses)
        await slack.command(f"show {scenario.id}", "U0ALICE")
        assert not hidden(await reply_text(fake, responses))  # complete after the reveal


async def test_a_reveal_of_two_thousand_answers_mentions_fifty_and_counts_the_rest(
    database_url: str, fake: FakeSlack
):
    from sqlalchemy import text

    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        await slack.open_round()
        async with app.db.transaction() as db:
            open_round = await db.scalar(select(Round))
            assert open_round is not None
            series = (
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000) "
                if app.db.is_sqlite
                else ""
            )
            source = "c" if app.db.is_sqlite else "generate_series(1, 2000) AS n"
            await db.execute(
                text(
                    series + "INSERT INTO members (community_id, external_id, display_name) "
                    f"SELECT :community, 'U9' || n, 'member ' || n FROM {source}"
                ),
                {"community": await db.scalar(select(Subscription.community_id))},
            )
            await db.execute(
                text(
                    "INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, "
                    "updated_at) SELECT :round, id, :yes, 'answer', :at, :at FROM members"
                ),
                {
                    "round": open_round.id,
                    "yes": True,
                    "at": datetime(2026, 11, 30, 10, tzinfo=None if app.db.is_sqlite else UTC),
                },
            )
        await slack.command("reveal-now", "U0ADMIN")
        await reply_text(fake, 2)
        reveal = fake.calls_to("chat.postMessage")[-1]
        assert reveal.params["thread_ts"] == open_round.question_message_id
        shown = json.dumps(reveal.params["blocks"]) + reveal.params["text"]
        assert 0 < len(set(re.findall(r"<@U9\d+>", shown))) <= 50
        assert "and 1,950 others" in shown


async def test_answers_past_slacks_reaction_pace_are_all_stored_and_only_some_reacted_to(
    database_url: str, fake: FakeSlack
):
    """reactions.add is Slack's Tier 3 (50+ a minute): a burst past it skips, counted, not 429s."""
    async with (
        running(database_url, fake, "http") as (app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        runtime.reactions = Backlog(1, burst=3, limit=2)  # a pace the test can outrun
        slack = HttpSlack(session, runtime.port, fake)
        thread = await slack.open_round()
        members = [f"U0M{n:03d}" for n in range(12)]
        replies = [
            fake.add_message(CHANNEL, user=m, text="Ring all-reduce.", thread_ts=thread)
            for m in members
        ]
        statuses = await asyncio.gather(
            *(
                slack.event(message_event(CHANNEL, r["user"], r["text"], r["ts"], thread_ts=thread))
                for r in replies
            )
        )
        assert statuses == [200] * len(members)
        async with app.db.transaction() as db:
            assert await db.scalar(select(func.count()).select_from(Answer)) == len(members)
        await fake.wait_for(lambda: len(fake.calls_to("reactions.add")) == 3)
        await asyncio.sleep(0.3)
        assert len(fake.calls_to("reactions.add")) == 3  # the burst; the rest would wait 60 s
        skipped = app.services.ctx.metrics.reactions_skipped.labels("slack")._value.get()
        assert skipped + runtime.reactions.waiting == len(members) - 3
        assert runtime.reactions.waiting <= 2  # the limit; the burst's tokens went first
        reacted = [r for r in replies if fake.reactions_on(CHANNEL, r["ts"])]
        assert len(reacted) == 3


async def test_a_rate_limited_reaction_is_added_once_after_its_retry_after(
    database_url: str, fake: FakeSlack
):
    async with (
        running(database_url, fake, "http") as (_app, runtime),
        aiohttp.ClientSession() as session,
    ):
        assert runtime.port is not None
        slack = HttpSlack(session, runtime.port, fake)
        thread = await slack.open_round()
        fake.fail_next("reactions.add", status=429, retry_after=1)
        reply = fake.add_message(CHANNEL, user="U0ALICE", text="Ring all-reduce.", thread_ts=thread)
        started = time.monotonic()
        event = message_event(CHANNEL, "U0ALICE", reply["text"], reply["ts"], thread_ts=thread)
        assert await slack.event(event) == 200
        await fake.wait_for(lambda: fake.reactions_on(CHANNEL, reply["ts"]) != [])
        assert time.monotonic() - started >= 1.0  # waited out the Retry-After
        assert len(fake.calls_to("reactions.add")) == 2  # the 429, then the one that added it
        assert fake.reactions_on(CHANNEL, reply["ts"]) == ["white_check_mark"]
