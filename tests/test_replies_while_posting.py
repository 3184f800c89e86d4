"""Replies that come while their question is still being posted: acknowledged, never lost.

Found by the soak (tests/test_soak.py): a member sees the question on Slack before the bot has
Slack's answer, replies, and the reply is acknowledged. Two races lost such an answer:

* The reply is stored in one transaction that looks twice: for the round whose thread it is
  in, then for a round of that channel still being posted (to hold the reply). When the post
  is stored between the two looks, neither finds it: the reply was acknowledged and dropped.
* A held reply joins its round once the post is stored. When the round is revealed before
  that (an admin's reveal-now, or adopting failed for a moment and the reveal came first), the
  reply joins a revealed round: late, and missing from the reveal although it came before.

Each race is pinned by a hook on the database driver that lets the other side run exactly
between two statements, so the tests need no timing. Both run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from sqlalchemy import event
from sqlalchemy.util import await_only

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.settings import Settings
from tests.slack_fake import FakeSlack, event_callback, message_event, sign, slash_command

SECRET = "replies-while-posting-secret"
CHANNEL, MEMBER, ADMIN = "C0POSTING", "U0ALICE", "U0ADA"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def slack(url: str) -> AsyncIterator[tuple[App, FakeSlack, Callable[..., Awaitable[int]]]]:
    """Run the Slack runtime (Events API over HTTP) against the fake, one study group in it."""
    async with FakeSlack() as fake, aiohttp.ClientSession() as http:
        fake.add_user(MEMBER, "alice")
        fake.add_user(ADMIN, "ada", admin=True)
        fake.messages.setdefault(CHANNEL, [])
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
                    "admin_ids": [ADMIN],
                },
            }
        )
        app = await build_app(configured, ManualClock(NOON))
        runtime = SlackRuntime(configured.slack, app.services)
        await runtime.start()

        async def send(body: bytes, content_type: str) -> int:
            headers = {"Content-Type": content_type, **sign(body, SECRET)}
            url = f"http://127.0.0.1:{runtime.port}/slack/events"
            async with http.post(url, data=body, headers=headers) as response:
                return response.status

        try:
            command = parse_prep("subscribe 09:00 UTC daily reveal=17:00")
            assert isinstance(command, Subscribe)
            await app.services.admin.subscribe(
                Place("slack", fake.team_id, CHANNEL), command.change
            )
            yield app, fake, send
        finally:
            await runtime.stop()
            await app.close()


async def reply(fake: FakeSlack, send: Callable[..., Awaitable[int]], thread: str) -> int:
    """Post the member's reply in the thread and deliver its event; return Slack's status."""
    message = fake.add_message(CHANNEL, user=MEMBER, text="Ring all-reduce", thread_ts=thread)
    event_ = message_event(CHANNEL, MEMBER, message["text"], message["ts"], thread_ts=thread)
    return await send(json.dumps(event_callback(event_)).encode(), "application/json")


async def reveal_now(fake: FakeSlack, send: Callable[..., Awaitable[int]]) -> None:
    """Run /prep reveal-now as the admin and wait for the bot's answer."""
    url = fake.response_url()
    form = slash_command(
        "reveal-now", user_id=ADMIN, user_name="ada", channel_id=CHANNEL, response_url=url
    )
    answered = len(fake.responses)
    assert await send(urlencode(form).encode(), "application/x-www-form-urlencoded") == 200
    await fake.wait_for(lambda: len(fake.responses) > answered)


def reveal_text(fake: FakeSlack, thread: str) -> str:
    """Return the bot's reveal in the thread, as members read it."""
    (reveal,) = [
        m
        for m in fake.messages[CHANNEL]
        if m.get("bot_id") == fake.bot_id and m.get("thread_ts") == thread and m["ts"] != thread
    ]
    return json.dumps(reveal["blocks"], ensure_ascii=False)


def before_statement(app: App, wanted: Callable[[str], bool], then: Callable[[], Any]) -> None:
    """The first time a statement ``wanted`` is about to run, run ``then()`` (awaited) first."""
    fired = False

    def hook(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        nonlocal fired
        if not fired and wanted(statement):
            fired = True
            await_only(then())  # the database's caller waits here; the event loop runs on

    for engine in {app.db.engine, app.db.writer_engine}:  # the answer writer has its own
        event.listen(engine.sync_engine, "before_cursor_execute", hook)


async def question_posted_but_unanswered(app: App, fake: FakeSlack) -> tuple[Any, Any, str]:
    """Start posting today's question; return (gate, post, thread) once members can see it."""
    gate = fake.hold_answers("chat.postMessage")
    group = await app.services.admin.subscription(Place("slack", fake.team_id, CHANNEL))
    assert group is not None
    post = asyncio.ensure_future(app.services.rounds.post_round(group.id, NOON.date()))
    await fake.wait_for(lambda: bool(fake.messages[CHANNEL]))
    return gate, post, fake.messages[CHANNEL][0]["ts"]


async def test_a_reply_made_as_its_question_is_stored_is_kept(database_url: str):
    async with slack(database_url) as (app, fake, send):
        gate, post, thread = await question_posted_but_unanswered(app, fake)

        async def store_the_post() -> None:
            gate.set()  # Slack answers the post; the bot stores it
            await post

        # The reply's transaction has looked for the thread's round (none yet); the post is
        # stored before it looks for a round being posted (none any more).
        before_statement(
            app,
            lambda sql: "rounds.status" in sql and "round_threads" not in sql and "held" not in sql,
            store_the_post,
        )
        assert await reply(fake, send, thread) == 200  # acknowledged: Slack will not resend it
        await reveal_now(fake, send)
        assert f"Answered on time: <@{MEMBER}>" in reveal_text(fake, thread)


async def test_a_held_reply_is_credited_when_the_round_is_revealed_before_it_joined(
    database_url: str,
):
    async with slack(database_url) as (app, fake, send):
        gate, post, thread = await question_posted_but_unanswered(app, fake)
        assert await reply(fake, send, thread) == 200  # held: the bot does not know the thread

        # The post is stored; before its held reply joins the round, an admin reveals it.
        before_statement(
            app,
            lambda sql: "FROM held_replies JOIN subscriptions" in sql,
            lambda: reveal_now(fake, send),
        )
        gate.set()
        await post
        assert f"Answered on time: <@{MEMBER}>" in reveal_text(fake, thread)
