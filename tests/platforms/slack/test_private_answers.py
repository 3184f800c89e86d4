"""Private answers on Slack end to end: the Answer button, its modal, the reveal that shows them.

Real slack-bolt over loopback against the fake Slack, in HTTP mode (signed ``payload=`` form
bodies) and Socket Mode (``interactive`` envelopes), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.views import MemberRef, QuestionCard
from prepbot.platforms.slack.adapter import ANSWER_MODAL, SlackPlatform, SlackRuntime
from prepbot.settings import Settings
from prepbot.store.models import Answer, Member
from tests.slack_fake import (
    FakeSlack,
    block_actions,
    event_callback,
    message_event,
    next_ts,
    post_interaction,
    sign,
    slash_command,
    view_submission,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0PRIVATE"
ADMIN = "U0ADMIN"
MEMBERS = {
    "U0ZELDA": "zelda-quux",
    "U0YUSUF": "yusuf-quux",
    "U0XENIA": "xenia-quux",
    "U0WANDA": "wanda-quux",
    "U0VIKTOR": "viktor-quux",
    "U0UMA": "uma-quux",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as started:
        started.add_user(ADMIN, "ada", admin=True)
        for user_id, name in MEMBERS.items():
            started.add_user(user_id, name)
        yield started


@asynccontextmanager
async def running(url: str, fake: FakeSlack, mode: str) -> AsyncIterator[tuple[App, SlackRuntime]]:
    configured = Settings.model_validate(
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
    app = await build_app(configured, ManualClock(datetime.now(UTC)))
    app.services.private.pace = 0.05  # the running count follows within 50 ms
    runtime = SlackRuntime(configured.slack, app.services)
    try:
        await runtime.start()
        yield app, runtime
    finally:
        await runtime.stop()
        await app.close()


class Slack:
    """What Slack sends the app (commands, events, interactions) over HTTP or Socket Mode."""

    def __init__(self, fake: FakeSlack, runtime: SlackRuntime, session: aiohttp.ClientSession):
        self.fake, self.runtime, self.session = fake, runtime, session
        self.url = f"http://127.0.0.1:{runtime.port}/slack/events"
        self.triggers = 0

    @property
    def http(self) -> bool:
        return self.runtime.settings.mode == "http"

    async def command(self, text: str, user: str) -> str:
        """Run ``/prep text`` as ``user``; return the response's JSON."""
        before = len(self.fake.responses)
        form = slash_command(
            text,
            user_id=user,
            user_name=MEMBERS.get(user, "ada"),
            channel_id=CHANNEL,
            response_url=self.fake.response_url(),
            channel_name="private-study",
            trigger_id=f"cmd.{next_ts()}",
        )
        if self.http:
            body = urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, SECRET)}
            async with self.session.post(self.url, data=body, headers=headers) as response:
                assert response.status == 200
        else:
            await self.fake.wait_ack(await self.fake.send_envelope("slash_commands", form))
        await self.fake.wait_for(lambda: len(self.fake.responses) > before)
        return json.dumps(self.fake.responses[before][1], ensure_ascii=False)

    async def event(self, event: dict[str, Any]) -> None:
        if self.http:
            body = json.dumps(event_callback(event)).encode()
            headers = {"Content-Type": "application/json", **sign(body, SECRET)}
            async with self.session.post(self.url, data=body, headers=headers) as response:
                assert response.status == 200
        else:
            await self.fake.wait_ack(
                await self.fake.send_envelope("events_api", event_callback(event))
            )

    async def interact(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Deliver a button press or modal submission; return what the app answered."""
        if self.http:
            status, answered = await post_interaction(self.session, self.url, payload, SECRET)
            assert status == 200
            return answered
        return await self.fake.send_interaction(payload)

    async def press_answer(self, user: str) -> dict[str, Any]:
        """Press Answer on the question as ``user``; return the modal views.open opened."""
        self.triggers += 1
        trigger = f"{self.triggers}.trigger.{user}"
        question = self.fake.messages[CHANNEL][0]
        press = block_actions(
            question,
            channel_id=CHANNEL,
            user_id=user,
            action_id="prep_answer",
            trigger_id=trigger,
            response_url=self.fake.response_url(),
        )
        assert await self.interact(press) in (None, {})
        await self.fake.wait_for(lambda: self.fake.view_opened_by(trigger) is not None)
        view = self.fake.view_opened_by(trigger)
        assert view is not None
        return view

    @staticmethod
    def submission(view: dict[str, Any], user: str, text: str | None) -> dict[str, Any]:
        return view_submission(view, user_id=user, values={"answer": {"text": text}})


@asynccontextmanager
async def slack_app(
    url: str, fake: FakeSlack, mode: str
) -> AsyncIterator[tuple[App, SlackRuntime, Slack]]:
    async with running(url, fake, mode) as (app, runtime), aiohttp.ClientSession() as session:
        if mode == "socket":
            await fake.wait_for_socket()
        yield app, runtime, Slack(fake, runtime, session)


def answer_input(view: dict[str, Any]) -> dict[str, Any]:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == "answer"]
    assert block["type"] == "input"
    assert block["optional"] is True
    element: dict[str, Any] = block["element"]
    assert element["type"] == "plain_text_input"
    assert element["action_id"] == "text"
    assert element["multiline"] is True
    assert element["max_length"] == 3000
    return element


def channel_text(fake: FakeSlack) -> str:
    """Return everything members can read in every channel and thread (not ephemerals)."""
    return json.dumps(fake.messages, ensure_ascii=False)


def bot_posts(fake: FakeSlack, thread: str) -> list[dict[str, Any]]:
    """Return the bot's messages in a round's thread: the question, then the reveal."""
    return [m for m in fake.thread(CHANNEL, thread) if m.get("bot_id") == fake.bot_id]


def ephemerals_to(fake: FakeSlack, user: str) -> list[str]:
    return [e["text"] for e in fake.ephemerals if e["user"] == user]


async def stored_answers(app: App) -> dict[str, str]:
    async with app.db.transaction() as session:
        rows = await session.execute(
            select(Member.external_id, Answer.text).join(Answer, Answer.member_id == Member.id)
        )
        return dict(rows.all())


async def open_private_round(slack: Slack) -> dict[str, Any]:
    """Make the channel a private-mode study group and post a question; return the question."""
    assert "now a study group" in await slack.command(
        "subscribe 09:00 UTC daily answers=private", ADMIN
    )
    await slack.command("post-now", ADMIN)
    (question,) = slack.fake.messages[CHANNEL]
    return question


def answer_button(question: dict[str, Any]) -> dict[str, Any]:
    (actions,) = [b for b in question["blocks"] if b["type"] == "actions"]
    (button,) = actions["elements"]
    return dict(button)


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_members_answer_privately_by_modal_and_the_reveal_publishes_them(
    database_url: str, fake: FakeSlack, mode: str
):
    async with slack_app(database_url, fake, mode) as (app, _, slack):
        question = await open_private_round(slack)
        button = answer_button(question)
        assert button["action_id"] == "prep_answer"
        assert button["text"]["text"] == "✍️ Answer"
        assert "private until the reveal" in json.dumps(question["blocks"], ensure_ascii=False)
        metadata = question["metadata"]
        thread = question["ts"]

        texts = {
            "U0ZELDA": "Zelda says ring all-reduce moves 2(N-1)/N of the data.",
            "U0YUSUF": "Yusuf first draft: a parameter server.",
            "U0XENIA": "Xenia: bandwidth-optimal ring, latency grows with N.",
            "U0WANDA": "Wanda will withdraw this one.",
            "U0VIKTOR": "Viktor: tree all-reduce for small messages.",
        }
        for user, text in texts.items():
            view = await slack.press_answer(user)
            assert view["callback_id"] == ANSWER_MODAL
            assert "initial_value" not in answer_input(view)
            assert json.loads(view["private_metadata"])["thread_ts"] == thread
            submission = slack.submission(view, user, text)
            assert await slack.interact(submission) is None  # stored: the modal closes
            if user == "U0XENIA":  # Slack delivered this submission twice
                assert await slack.interact(submission) is None

        edited = "Yusuf, edited: ring all-reduce, 2(N-1)/N per GPU."
        view = await slack.press_answer("U0YUSUF")
        assert answer_input(view)["initial_value"] == texts["U0YUSUF"]
        assert await slack.interact(slack.submission(view, "U0YUSUF", edited)) is None

        view = await slack.press_answer("U0WANDA")
        assert answer_input(view)["initial_value"] == texts["U0WANDA"]
        assert await slack.interact(slack.submission(view, "U0WANDA", None)) is None

        assert await stored_answers(app) == {
            "U0ZELDA": texts["U0ZELDA"],
            "U0YUSUF": edited,
            "U0XENIA": texts["U0XENIA"],
            "U0VIKTOR": texts["U0VIKTOR"],
        }

        # The question shows the count, edited in place, still carrying its round's metadata.
        await fake.wait_for(lambda: "4 answers so far" in json.dumps(question["blocks"]))
        assert fake.messages[CHANNEL][0] is question
        assert question["ts"] == thread
        assert question["metadata"] == metadata
        assert answer_button(question)["action_id"] == "prep_answer"
        assert all(call.params["ts"] == thread for call in fake.calls_to("chat.update"))

        # Each member was told privately, in the thread; the duplicate changed nothing.
        await fake.wait_for(lambda: len(fake.ephemerals) >= 8)
        assert any("answer is stored" in t for t in ephemerals_to(fake, "U0ZELDA"))
        assert any("already received" in t for t in ephemerals_to(fake, "U0XENIA"))
        assert any("updated" in t for t in ephemerals_to(fake, "U0YUSUF"))
        assert any("withdrawn" in t for t in ephemerals_to(fake, "U0WANDA"))
        assert all(e["thread_ts"] == thread for e in fake.ephemerals)

        # Nothing anyone wrote, nor who wrote it, is readable in the channel before the reveal.
        public = channel_text(fake)
        for user, text in [*texts.items(), ("U0YUSUF", edited)]:
            assert text not in public
            assert MEMBERS[user] not in public
            assert user not in public

        # A reply in the thread is stored all the same, and its author reminded it is public.
        reply = "Uma replied in the thread instead."
        posted = fake.add_message(CHANNEL, user="U0UMA", text=reply, thread_ts=thread)
        await slack.event(message_event(CHANNEL, "U0UMA", reply, posted["ts"], thread_ts=thread))
        assert (await stored_answers(app))["U0UMA"] == reply
        await fake.wait_for(lambda: any("Heads up" in t for t in ephemerals_to(fake, "U0UMA")))
        (reminder,) = [e for e in fake.ephemerals if e["user"] == "U0UMA"]
        assert reminder["thread_ts"] == thread
        assert reminder["channel"] == CHANNEL

        await slack.command("reveal-now", ADMIN)
        await fake.wait_for(lambda: len(bot_posts(fake, thread)) == 2)
        _, reveal = bot_posts(fake, thread)
        shown = json.dumps(reveal["blocks"], ensure_ascii=False)
        assert "The answers, private until now" in shown
        for user in ("U0ZELDA", "U0XENIA", "U0VIKTOR"):
            assert shown.count(texts[user]) == 1
            assert shown.count(f"*{MEMBERS[user]}*:") == 1
        assert shown.count(edited) == 1
        assert texts["U0YUSUF"] not in shown
        assert texts["U0WANDA"] not in shown
        assert "wanda-quux" not in shown
        shared = [b for b in reveal["blocks"] if "private until now" in json.dumps(b)]
        assert "<@" not in json.dumps(shared)  # names in bold, no pings


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_a_submission_with_no_open_round_keeps_the_modal_open_with_the_reason(
    database_url: str, fake: FakeSlack, mode: str
):
    async with slack_app(database_url, fake, mode) as (app, _, slack):
        assert "now a study group" in await slack.command(
            "subscribe 09:00 UTC daily answers=private", ADMIN
        )
        view = {
            "id": "V0STALE",
            "type": "modal",
            "callback_id": ANSWER_MODAL,
            "title": {"type": "plain_text", "text": "Your answer"},
            "private_metadata": json.dumps(
                {"channel": CHANNEL, "thread_ts": next_ts(), "team_id": fake.team_id}
            ),
            "blocks": [],
        }
        answered = await slack.interact(Slack.submission(view, "U0ZELDA", "Too early."))
        assert answered is not None
        assert answered["response_action"] == "errors"
        assert "no open question" in answered["errors"]["answer"]
        assert await stored_answers(app) == {}
        assert fake.ephemerals == []


async def test_an_unreadable_submission_keeps_the_modal_open(database_url: str, fake: FakeSlack):
    async with slack_app(database_url, fake, "http") as (app, _, slack):
        view = {"id": "V0ODD", "type": "modal", "callback_id": ANSWER_MODAL, "blocks": []}
        view["private_metadata"] = "not json"
        answered = await slack.interact(Slack.submission(view, "U0ZELDA", "Lost?"))
        assert answered is not None
        assert answered["response_action"] == "errors"
        assert "nothing was saved" in answered["errors"]["answer"]
        assert await stored_answers(app) == {}


async def test_a_modal_from_another_workspace_is_refused_and_stays_open(
    database_url: str, fake: FakeSlack
):
    async with slack_app(database_url, fake, "http") as (app, _, slack):
        await open_private_round(slack)
        view = await slack.press_answer("U0ZELDA")
        foreign = view_submission(
            view, user_id="U0ZELDA", values={"answer": {"text": "Hi"}}, team_id="T0OTHER"
        )
        answered = await slack.interact(foreign)
        assert answered is not None
        assert answered["response_action"] == "errors"
        assert "another Slack workspace" in answered["errors"]["answer"]
        assert await stored_answers(app) == {}


async def test_prep_answer_stores_a_private_answer_with_the_trigger_as_its_id(
    database_url: str, fake: FakeSlack
):
    async with slack_app(database_url, fake, "socket") as (app, _, slack):
        await open_private_round(slack)
        reply = await slack.command("answer Zelda by command.", "U0ZELDA")
        assert "answer is stored" in reply
        assert '"response_type": "ephemeral"' in reply
        assert await stored_answers(app) == {"U0ZELDA": "Zelda by command."}
        view = await slack.press_answer("U0ZELDA")
        assert answer_input(view)["initial_value"] == "Zelda by command."
        assert "Zelda by command." not in channel_text(fake)


async def test_the_count_is_edited_in_place_through_a_429_keeping_the_metadata(fake: FakeSlack):
    platform = SlackPlatform(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
    card = QuestionCard(
        scenario_id="s1",
        title="A question",
        situation="A situation.",
        prompts=("Why?",),
        kind="design",
        difficulty="medium",
        topics=("training",),
        company=None,
        role=None,
        round_date=date(2026, 3, 3),
        reveal_at=datetime(2026, 3, 3, 17, 0, tzinfo=UTC),
        private=True,
    )
    ts = await platform.post_question(CHANNEL, card, community_id=fake.team_id)
    (question,) = fake.messages[CHANNEL]
    marker = question["metadata"]
    fake.fail_next("chat.update", status=429, retry_after=0)
    await platform.show_answer_count(
        CHANNEL, ts, replace(card, answer_count=3), community_id=fake.team_id
    )
    assert len(fake.calls_to("chat.update")) == 2  # the 429 made nothing; sent again
    assert fake.messages[CHANNEL] == [question]
    assert question["ts"] == ts
    assert question["metadata"] == marker  # a repair's find_question still finds it
    assert "3 answers so far" in json.dumps(question["blocks"], ensure_ascii=False)
    assert answer_button(question)["action_id"] == "prep_answer"
    since = datetime.now(UTC)
    assert await platform.find_question(CHANNEL, card, since=since) == ts


async def test_a_notice_is_ephemeral_in_the_thread_and_false_when_slack_cannot_show_it(
    fake: FakeSlack,
):
    platform = SlackPlatform(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
    member = MemberRef("U0ZELDA", "zelda-quux")
    assert await platform.send_notice(CHANNEL, "1.000100", member, "Stored *privately*.")
    (shown,) = fake.ephemerals
    assert shown["user"] == "U0ZELDA"
    assert shown["thread_ts"] == "1.000100"
    assert "Stored *privately*." in shown["text"]
    fake.fail_next("chat.postEphemeral", status=200, error="user_not_in_channel")
    assert not await platform.send_notice(CHANNEL, "1.000100", member, "Gone?")


async def test_the_fake_refuses_a_modal_without_a_trigger(fake: FakeSlack):
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []}
    with pytest.raises(SlackApiError) as refused:
        await client.views_open(trigger_id="", view=modal)
    assert refused.value.response["error"] == "invalid_trigger_id"
    opened = await client.views_open(trigger_id="1.2.3", view=modal)
    assert opened["view"]["id"].startswith("V")
    assert fake.view_opened_by("1.2.3") is not None
