"""Slow and rate-limited platforms: every round is posted and revealed once, no answer is lost.

Issue 12, finding 1, driven through the real Slack and Discord adapters against the loopback
fakes. A slow platform is a delayed HTTP response, not a mocked function: the fake carries the
call out at once (the question is in the channel, members can reply in its thread) and answers
late, or answers 429 with a Retry-After, or 500s. Meanwhile the safety tick runs again and
again on this process and on a second one, and every round's lease is short (it would run out
many times over if its owner stopped renewing it). What users would notice is asserted: one
question and one reveal in the channel, the admin told the truth, the member's reply stored as
the round's answer and credited at the reveal. Slack's client gives up after
``slack.request_timeout_seconds``; discord.py has no REST timeout of its own (aiohttp's five
minutes), so on Discord a late answer is only slow, and the tests where the client must give
up give its session a short timeout.

Each test runs on SQLite and PostgreSQL, except the one at the issue's own scale (a 35 s answer
with the default 30 s timeout, a Retry-After of 20 s), which runs once: on PostgreSQL when the
suite has it (CI does), else on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select, update

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.platforms.discord.adapter import DiscordRuntime
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.platforms.slack.events import slack_time
from prepbot.scheduling import RoundScheduler
from prepbot.services import Services
from prepbot.settings import Settings
from prepbot.store.models import Answer, HeldReply, Member, Round, RoundStatus
from tests.conftest import POSTGRES_ENV, _truncate
from tests.discord_fake import FakeDiscord
from tests.slack_fake import (
    FakeSlack,
    event_callback,
    message_event,
    next_ts,
    sign,
    slash_command,
)

LEASE = timedelta(seconds=2)  # renewed every 2/3 s while in flight; runs out 2 s after a death
TICK = 0.2  # seconds between safety ticks (production: 30 s; here many ticks per lease)
SECRET = "a-signing-secret-for-slow-tests"
CHANNEL = "C0SLOW"
ADMIN, ALICE = "U0ADMIN", "U0ALICE"
RETRY_AFTER = 3  # seconds; longer than a lease (the issue's 20 s runs once, below)


@pytest.fixture
def one_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return an empty database: PostgreSQL when the suite has one (CI does), else SQLite."""
    if not os.environ.get(POSTGRES_ENV):
        return f"sqlite:///{tmp_path / 'prepbot.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


def next_process(app: App) -> Services:
    """Return the services of another process on the same database and platforms."""
    return Services.build(dataclasses.replace(app.services.ctx, owner="the other process"))


class SafetyTicks:
    """The safety tick, again and again, on this process and on another, as replicas run it."""

    def __init__(self, app: App) -> None:
        self.schedulers = [RoundScheduler(app.services), RoundScheduler(next_process(app))]
        self.repaired: list[int] = []
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for scheduler in self.schedulers:
                self.repaired += (await scheduler.tick()).repaired
                self.ticks += 1
            await asyncio.sleep(TICK)

    async def __aenter__(self) -> SafetyTicks:
        self._task = asyncio.create_task(self._run(), name="safety-ticks")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # a tick that raised fails the test
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for scheduler in self.schedulers:
            await scheduler.idle()

    async def until(self, condition: Any, timeout: float = 30) -> None:
        """Keep ticking until ``condition()`` (maybe a coroutine function) holds."""
        async with asyncio.timeout(timeout):
            while True:
                assert self._task is not None
                if self._task.done():
                    self._task.result()
                held = condition()
                if asyncio.iscoroutine(held):
                    held = await held
                if held:
                    return
                await asyncio.sleep(0.05)


async def round_now(app: App) -> Round:
    async with app.db.transaction() as session:
        (round_,) = (await session.scalars(select(Round))).all()
    return round_


async def answers(app: App) -> dict[str, tuple[int, bool, str]]:
    """Return each member's answer: its round, whether it was on time, its text."""
    async with app.db.transaction() as session:
        rows = await session.execute(
            select(Member.external_id, Answer.round_id, Answer.on_time, Answer.text).join(
                Answer, Answer.member_id == Member.id
            )
        )
        return {str(m): (r, bool(t), x) for m, r, t, x in rows.all()}


async def held(app: App) -> int:
    async with app.db.transaction() as session:
        return len((await session.scalars(select(HeldReply))).all())


# -- Slack -------------------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user(ADMIN, "ada", admin=True)
        fake.add_user(ALICE, "alice")
        fake.messages.setdefault(CHANNEL, [])
        yield fake


class SignedSlack:
    """Sends slash commands and message events to the bot's HTTP endpoint, signed as Slack does."""

    def __init__(self, session: aiohttp.ClientSession, port: int, fake: FakeSlack) -> None:
        self.session, self.url, self.fake = session, f"http://127.0.0.1:{port}/slack/events", fake

    async def _post(self, body: bytes, content_type: str) -> int:
        headers = {"Content-Type": content_type, **sign(body, SECRET)}
        async with self.session.post(self.url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def command(self, text: str, user: str = ADMIN) -> str:
        """Type ``/prep text``: Slack posts the form; return the response URL's id."""
        url = self.fake.response_url()
        form = slash_command(
            text, user_id=user, user_name=user.lower(), channel_id=CHANNEL, response_url=url
        )
        body = urlencode(form).encode()
        assert await self._post(body, "application/x-www-form-urlencoded") == 200
        return url.rsplit("/", 1)[-1]

    def answer(self, command: str) -> str | None:
        """Return the answer the bot sent to a command's response URL, if it came yet."""
        for rid, body in self.fake.responses:
            if rid == command:
                return json.dumps(body, ensure_ascii=False)
        return None

    async def reply(self, thread_ts: str, user: str, text: str) -> int:
        """Reply in a thread: the message is in Slack, and its event comes to the bot."""
        message = self.fake.add_message(CHANNEL, user=user, text=text, thread_ts=thread_ts)
        event = message_event(CHANNEL, user, text, message["ts"], thread_ts=thread_ts)
        body = json.dumps(event_callback(event)).encode()
        return await self._post(body, "application/json")

    async def answered(self, text: str, ticks: SafetyTicks, timeout: float = 30) -> str:
        """Run ``/prep text`` as the admin; return the answer they read (ticking meanwhile)."""
        command = await self.command(text)
        await ticks.until(lambda: self.answer(command) is not None, timeout)
        return str(self.answer(command))


@asynccontextmanager
async def slack_running(
    url: str, fake: FakeSlack, *, timeout: float | None = None, lease: timedelta = LEASE
) -> AsyncIterator[tuple[App, SlackRuntime, SignedSlack]]:
    patience = {} if timeout is None else {"request_timeout_seconds": timeout}
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
                **patience,
            },
        }
    )
    # The fake's message timestamps start on 2026-01-01: the bot's clock agrees with them, or
    # a reply held while its question is posted would look days old (and be dropped).
    app = await build_app(configured, ManualClock(slack_time(next_ts())))
    app.services.ctx.lease = lease  # leases run on real time, whatever the clock says
    runtime = SlackRuntime(configured.slack, app.services)
    try:
        await runtime.start()
        assert runtime.port is not None
        async with aiohttp.ClientSession() as session:
            yield app, runtime, SignedSlack(session, runtime.port, fake)
    finally:
        await runtime.stop()
        await app.close()


def slack_bot_posts(fake: FakeSlack, kind: str) -> list[dict[str, Any]]:
    """Return the bot's messages in the channel that carry a round's metadata of ``kind``."""
    return [
        m
        for m in fake.messages.get(CHANNEL, [])
        if m.get("bot_id") == fake.bot_id and (m.get("metadata") or {}).get("event_type") == kind
    ]


async def slack_question_appears(fake: FakeSlack, ticks: SafetyTicks) -> str:
    """Wait (ticking) until the question is in the channel; return its ts."""
    await ticks.until(lambda: slack_bot_posts(fake, "prepbot_question"))
    return str(slack_bot_posts(fake, "prepbot_question")[0]["ts"])


def says(answer: str, *words: str) -> bool:
    return all(word in answer for word in words)


def blames_nobody(answer: str) -> None:
    """Assert the admin's answer is no error, does not blame them, and claims no second post."""
    assert ":warning:" not in answer, answer
    assert "Something went wrong" not in answer, answer
    assert "Try again" not in answer, answer
    assert "twice" not in answer.replace("never posts a round twice", ""), answer


@pytest.mark.parametrize(
    ("delay", "timeout"),
    [(2.5, 10.0), (3.0, 1.0)],
    ids=["answered-late", "answered-after-the-client-gave-up"],
)
async def test_slack_post_now_and_reveal_now_answered_late_happen_once_and_count_the_reply(
    database_url: str, slack: FakeSlack, delay: float, timeout: float
):
    """chat.postMessage answers seconds late, or after the client's timeout: still one of each.

    Answered late (the client still waits): the lease is renewed, no tick repairs anything,
    the admin reads "Posted". Answered after the client gave up: the admin reads that the
    platform did not confirm it and that the round is kept; once the lease runs out a tick
    finds the bot's own message by its metadata and posts nothing.
    """
    gave_up = delay > timeout
    async with (
        slack_running(database_url, slack, timeout=timeout) as (app, _, signed),
        SafetyTicks(app) as ticks,
    ):
        assert "now a study group" in await signed.answered(
            "subscribe 09:00 UTC daily reveal=+6h", ticks
        )
        slack.slow_next("chat.postMessage", delay)
        post_now = await signed.command("post-now")
        ticked = ticks.ticks
        thread = await slack_question_appears(slack, ticks)
        assert await signed.reply(thread, ALICE, "Ring all-reduce.") == 200  # stored, held
        if not gave_up:
            again = await signed.answered("post-now", ticks)  # the admin grows impatient
            assert "being posted right now" in again, again
        await ticks.until(lambda: signed.answer(post_now) is not None)
        assert ticks.ticks - ticked >= 2  # both processes ticked while the post was in flight
        assert ticks.repaired == []  # ... and left it to its owner, who kept the lease
        posted = str(signed.answer(post_now))
        blames_nobody(posted)
        if gave_up:
            assert says(posted, "did not confirm the post in time", "appears once"), posted
        else:
            assert "Posted today's question." in posted, posted
        await ticks.until(lambda: _posted(app))
        await ticks.until(lambda: _answered(app, ALICE))
        round_ = await round_now(app)
        assert round_.question_message_id == thread
        assert (await answers(app))[ALICE] == (round_.id, True, "Ring all-reduce.")
        # Adopting stores the held reply, then forgets it in a transaction of its own.
        await ticks.until(lambda: _none_held(app))

        slack.slow_next("chat.postMessage", delay)
        revealed = await signed.answered("reveal-now", ticks)
        blames_nobody(revealed)
        if gave_up:
            assert says(revealed, "did not confirm the reveal in time", "appears once"), revealed
        else:
            assert "Revealed 1 question." in revealed, revealed
        await ticks.until(lambda: _reveal_sent(app))
        await ticks.until(lambda: len(ticks.repaired) == (2 if gave_up else 0))
        round_ = await round_now(app)

    assert len(slack_bot_posts(slack, "prepbot_question")) == 1
    (reveal,) = slack_bot_posts(slack, "prepbot_reveal")
    assert reveal["thread_ts"] == thread
    assert f"<@{ALICE}>" in json.dumps(reveal["blocks"])
    assert round_.reveal_message_id == reveal["ts"]
    assert len(slack.answered_late) == 2
    assert len(slack.calls_to("chat.postMessage")) == 2  # one question, one reveal: no resend
    assert len(ticks.repaired) == (2 if gave_up else 0)


async def _claimed(app: App) -> bool:
    async with app.db.transaction() as session:
        return (await session.scalar(select(Round.status))) == RoundStatus.CLAIMED


async def _posted(app: App) -> bool:
    return (await round_now(app)).status == RoundStatus.POSTED


async def _reveal_sent(app: App) -> bool:
    return (await round_now(app)).reveal_message_id is not None


async def _none_held(app: App) -> bool:
    return await held(app) == 0


async def _answered(app: App, member: str) -> bool:
    return member in await answers(app)


async def test_slack_rate_limited_post_now_and_reveal_now_wait_it_out_and_happen_once(
    database_url: str, slack: FakeSlack
):
    """A 429 with a Retry-After longer than the lease: the post waits it out; no tick reposts."""
    async with slack_running(database_url, slack) as (app, _, signed), SafetyTicks(app) as ticks:
        await signed.answered("subscribe 09:00 UTC daily reveal=+6h", ticks)
        slack.fail_next("chat.postMessage", status=429, retry_after=RETRY_AFTER)
        post_now = await signed.command("post-now")
        await ticks.until(lambda: _claimed(app))
        again = await signed.answered("post-now", ticks)  # while the 429 is waited out
        assert "being posted right now" in again, again
        await ticks.until(lambda: signed.answer(post_now) is not None)
        posted = str(signed.answer(post_now))
        blames_nobody(posted)
        assert "Posted today's question." in posted, posted
        thread = await slack_question_appears(slack, ticks)
        assert await signed.reply(thread, ALICE, "Ring all-reduce.") == 200
        await ticks.until(lambda: _answered(app, ALICE))

        slack.fail_next("chat.postMessage", status=429, retry_after=RETRY_AFTER)
        revealed = await signed.answered("reveal-now", ticks)
        assert "Revealed 1 question." in revealed, revealed
        round_ = await round_now(app)

    assert ticks.repaired == []
    assert len(slack_bot_posts(slack, "prepbot_question")) == 1
    (reveal,) = slack_bot_posts(slack, "prepbot_reveal")
    assert reveal["thread_ts"] == thread == round_.question_message_id
    assert f"<@{ALICE}>" in json.dumps(reveal["blocks"])
    assert len(slack.calls_to("chat.postMessage")) == 4  # each sent twice: 429, then posted


async def test_slack_a_post_made_before_its_process_died_is_found_not_posted_again(
    database_url: str, slack: FakeSlack
):
    """Slack made the question, the poster never learned its ts, then its process went away.

    The next process leaves the round alone while its lease runs (its owner may be alive),
    then finds the question by its metadata, posts nothing, and the reply made meanwhile counts.
    """
    production_lease = timedelta(seconds=90)
    async with (
        slack_running(database_url, slack, timeout=1.0, lease=production_lease) as (app, _, signed),
        SafetyTicks(app) as ticks,
    ):
        await signed.answered("subscribe 09:00 UTC daily reveal=+6h", ticks)
        slack.slow_next("chat.postMessage", 3.0)
        post_now = await signed.command("post-now")
        thread = await slack_question_appears(slack, ticks)
        assert await signed.reply(thread, ALICE, "Ring all-reduce.") == 200
        await ticks.until(lambda: signed.answer(post_now) is not None)
        assert "did not confirm the post in time" in str(signed.answer(post_now))
    # That process is gone. The round it claimed is still claimed, its lease still running.

    async with slack_running(database_url, slack) as (app, _, signed), SafetyTicks(app) as ticks:
        await asyncio.sleep(LEASE.total_seconds() + 0.5)
        assert ticks.repaired == []  # 90 s have not passed: its owner may be alive
        assert (await round_now(app)).status == RoundStatus.CLAIMED
        async with app.db.transaction() as session:  # ... and now they have
            await session.execute(update(Round).values(lease_until=datetime.now(UTC)))
        await ticks.until(lambda: ticks.repaired)
        await ticks.until(lambda: _answered(app, ALICE))
        round_ = await round_now(app)
        assert round_.question_message_id == thread
        assert (await answers(app))[ALICE] == (round_.id, True, "Ring all-reduce.")
        assert "Revealed 1 question." in await signed.answered("reveal-now", ticks)

    assert len(ticks.repaired) == 1
    assert len(slack_bot_posts(slack, "prepbot_question")) == 1
    (reveal,) = slack_bot_posts(slack, "prepbot_reveal")
    assert reveal["thread_ts"] == thread
    assert f"<@{ALICE}>" in json.dumps(reveal["blocks"])


@pytest.mark.slow(seconds=55)
async def test_slack_at_the_issues_scale_a_35_s_answer_and_a_20_s_retry_after(
    one_database: str, slack: FakeSlack
):
    """The issue's own numbers: chat.postMessage answers after 35 s (the client gives up at its
    default 30 s), and the reveal meets a 429 with Retry-After: 20. About a minute."""
    async with slack_running(one_database, slack) as (app, _, signed), SafetyTicks(app) as ticks:
        await signed.answered("subscribe 09:00 UTC daily reveal=+6h", ticks)
        slack.slow_next("chat.postMessage", 35)
        post_now = await signed.command("post-now")
        thread = await slack_question_appears(slack, ticks)
        assert await signed.reply(thread, ALICE, "Ring all-reduce.") == 200
        await ticks.until(lambda: signed.answer(post_now) is not None, timeout=60)
        assert ticks.repaired == []  # 30 s of ticks on two processes: its owner kept the lease
        posted = str(signed.answer(post_now))
        blames_nobody(posted)
        assert says(posted, "did not confirm the post in time", "appears once"), posted
        await ticks.until(lambda: _answered(app, ALICE))
        await ticks.until(lambda: ticks.repaired)  # after the client gave up, not before

        slack.fail_next("chat.postMessage", status=429, retry_after=20)
        revealed = await signed.answered("reveal-now", ticks, timeout=60)
        assert "Revealed 1 question." in revealed, revealed
        round_ = await round_now(app)

    assert len(ticks.repaired) == 1
    assert len(slack_bot_posts(slack, "prepbot_question")) == 1
    (reveal,) = slack_bot_posts(slack, "prepbot_reveal")
    assert reveal["thread_ts"] == thread == round_.question_message_id
    assert f"<@{ALICE}>" in json.dumps(reveal["blocks"])


# -- Discord -----------------------------------------------------------------------------------

GUILD, OWNER, MOD, MEMBER = 100, 500, 501, 502
TEXT = 2000
CREATE_MESSAGE = rf"/channels/{TEXT}/messages"
START_THREAD = rf"/channels/{TEXT}/messages/\d+/threads"
IN_A_THREAD = r"/channels/\d+/messages"


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        fake.add_member(GUILD, MOD, "ada", manage_guild=True)
        fake.add_member(GUILD, MEMBER, "alice")
        fake.add_text_channel(GUILD, TEXT, "study")
        with fake.patch_discord():
            yield fake


@asynccontextmanager
async def discord_running(
    url: str, fake: FakeDiscord, *, patience: float | None = None
) -> AsyncIterator[tuple[App, DiscordRuntime]]:
    configured = Settings.model_validate(
        {
            "database": {"url": url},
            "discord": {
                "token": fake.token,
                "application_id": fake.application_id,
                "api_url": fake.api_base,
                "gateway_url": fake.gateway_url,
                "guild_ids": [GUILD],
                # The product's deadline on each REST exchange (30 s by default), short here so
                # a late answer becomes a timeout quickly.
                **({"request_timeout_seconds": patience} if patience is not None else {}),
            },
        }
    )
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    app.services.ctx.lease = LEASE
    try:
        runtime = await _logged_in(configured, app)
        try:
            yield app, runtime
        finally:
            await runtime.stop()
    finally:
        await app.close()


async def _logged_in(configured: Settings, app: App, tries: int = 3) -> DiscordRuntime:
    """Start a Discord runtime; on a timeout, a new one, as prepbot's start-up tries again.

    With a one-second deadline on every REST exchange, a loaded CI machine once took longer
    than that to answer the login's first call (GET /users/@me).
    """
    for attempt in range(1, tries + 1):
        runtime = DiscordRuntime(configured.discord, app.services)
        try:
            await runtime.start(timeout=30)
            return runtime
        except TimeoutError:
            await runtime.stop()
            if attempt == tries:
                raise
    raise AssertionError("unreachable")


async def discord_command(fake: FakeDiscord, name: str) -> str:
    """Run ``/prep name`` as the moderator; return the interaction to read the answer of."""
    return await fake.slash_command(GUILD, TEXT, MOD, f"prep {name}")


def discord_answer(fake: FakeDiscord, interaction: str) -> str | None:
    """Return the bot's follow-up to an interaction (what the member reads), if it came."""
    for response in fake.interaction_responses(interaction):
        if response["kind"] == "followup":
            return json.dumps(response["json"], ensure_ascii=False)
    return None


async def discord_subscribe(fake: FakeDiscord, ticks: SafetyTicks) -> None:
    """Make the study channel a study group whose reveal is hours away, whatever the hour."""
    options = [{"name": "time", "value": "09:00"}, {"name": "reveal", "value": "+6h"}]
    interaction = await fake.slash_command(GUILD, TEXT, MOD, "prep subscribe", options)
    await ticks.until(lambda: discord_answer(fake, interaction) is not None)
    assert "now a study group" in str(discord_answer(fake, interaction))


async def discord_answered(fake: FakeDiscord, name: str, ticks: SafetyTicks) -> str:
    interaction = await discord_command(fake, name)
    await ticks.until(lambda: discord_answer(fake, interaction) is not None)
    return str(discord_answer(fake, interaction))


def discord_questions(fake: FakeDiscord) -> list[dict[str, Any]]:
    """Return the bot's posts in the study channel (its command answers left out)."""
    return [
        m
        for m in fake.messages.get(TEXT, [])
        if m["author"]["id"] == str(fake.bot_user_id) and m["type"] != 20
    ]


def discord_threads(fake: FakeDiscord) -> list[int]:
    return [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]


def discord_reveals(fake: FakeDiscord, thread: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages.get(thread, []) if m["author"]["id"] == str(fake.bot_user_id)]


def truthful(answer: str) -> None:
    """Assert the admin's answer is no error, blames nobody and claims no second post."""
    assert "⚠️" not in answer, answer
    assert "Something went wrong" not in answer, answer
    assert "Try again" not in answer, answer


async def test_discord_post_now_slowed_by_429s_500s_and_a_late_thread_happens_once(
    database_url: str, discord: FakeDiscord
):
    """Create-message meets a 429 and a 500, start-thread a 500 and a late answer; the reveal
    a 429 and a late answer. discord.py waits them all out while the lease is renewed and both
    processes tick: one question, one thread, one reveal, the reply made meanwhile counts."""
    async with discord_running(database_url, discord) as (app, _), SafetyTicks(app) as ticks:
        await discord_subscribe(discord, ticks)
        discord.fail_next("POST", CREATE_MESSAGE, status=429, retry_after=0.5)
        discord.fail_next("POST", CREATE_MESSAGE, status=500)
        discord.fail_next("POST", START_THREAD, status=500)
        discord.slow_next("POST", START_THREAD, 2.5)
        post_now = await discord_command(discord, "post-now")
        ticked = ticks.ticks
        await ticks.until(lambda: discord_threads(discord))
        (thread,) = discord_threads(discord)
        await discord.member_message(thread, MEMBER, "Ring all-reduce.", guild_id=GUILD)
        await ticks.until(lambda: discord_answer(discord, post_now) is not None)
        assert ticks.ticks - ticked >= 2
        assert ticks.repaired == []
        posted = str(discord_answer(discord, post_now))
        truthful(posted)
        assert "Posted today's question." in posted, posted
        await ticks.until(lambda: _answered(app, str(MEMBER)))
        round_ = await round_now(app)
        assert round_.question_message_id == str(thread)
        assert (await answers(app))[str(MEMBER)] == (round_.id, True, "Ring all-reduce.")

        discord.fail_next("POST", IN_A_THREAD, status=429, retry_after=0.5)
        discord.slow_next("POST", IN_A_THREAD, 2.5)
        revealed = await discord_answered(discord, "reveal-now", ticks)
        truthful(revealed)
        assert "Revealed 1 question." in revealed, revealed

    assert ticks.repaired == []
    assert len(discord_questions(discord)) == 1
    assert discord_threads(discord) == [thread]
    (reveal,) = discord_reveals(discord, thread)
    assert f"<@{MEMBER}>" in reveal["content"]


@pytest.mark.parametrize("late", ["create-message", "start-thread"])
async def test_discord_a_post_whose_answer_never_came_is_found_and_its_thread_reused(
    database_url: str, discord: FakeDiscord, late: str
):
    """Discord made the question (and maybe its thread), the client gave up waiting.

    The admin is told the truth; once the lease runs out a tick finds the bot's question in
    the channel's history, opens its thread or takes the one there, and posts nothing again.
    A reply made in the thread meanwhile counts; a reveal whose answer never came is found too.
    """
    async with (
        discord_running(database_url, discord, patience=1.0) as (app, _),
        SafetyTicks(app) as ticks,
    ):
        await discord_subscribe(discord, ticks)
        discord.slow_next("POST", CREATE_MESSAGE if late == "create-message" else START_THREAD, 3)
        post_now = await discord_command(discord, "post-now")
        if late == "start-thread":  # the thread is open while the bot still waits
            await ticks.until(lambda: discord_threads(discord))
            (thread,) = discord_threads(discord)
            await discord.member_message(thread, MEMBER, "Ring all-reduce.", guild_id=GUILD)
        await ticks.until(lambda: discord_answer(discord, post_now) is not None)
        assert ticks.repaired == []
        posted = str(discord_answer(discord, post_now))
        truthful(posted)
        assert "did not confirm the post in time" in posted, posted
        await ticks.until(lambda: _posted(app))
        (thread,) = discord_threads(discord)
        if late == "create-message":  # the repair opened the thread: now members can reply
            await discord.member_message(thread, MEMBER, "Ring all-reduce.", guild_id=GUILD)
        await ticks.until(lambda: _answered(app, str(MEMBER)))
        round_ = await round_now(app)
        assert round_.question_message_id == str(thread)
        assert (await answers(app))[str(MEMBER)] == (round_.id, True, "Ring all-reduce.")

        discord.slow_next("POST", IN_A_THREAD, 3)
        revealed = await discord_answered(discord, "reveal-now", ticks)
        truthful(revealed)
        assert "did not confirm the reveal in time" in revealed, revealed
        await ticks.until(lambda: _reveal_sent(app))
        await ticks.until(lambda: len(ticks.repaired) == 2)

    assert len(ticks.repaired) == 2  # the question, then the reveal: each found, not resent
    (question,) = discord_questions(discord)
    assert discord_threads(discord) == [thread] == [int(question["id"])]
    (reveal,) = discord_reveals(discord, thread)
    assert f"<@{MEMBER}>" in reveal["content"]
