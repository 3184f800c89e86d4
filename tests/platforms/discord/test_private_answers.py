"""Private answers on Discord: the Answer button, its modal, the count and the reveal.

The real discord.py client against the loopback fake, on SQLite and PostgreSQL: a study group
that answers privately shows nothing of an answer before the reveal, keeps the question's count
current, and publishes exactly the answers standing at the reveal, each once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from prepbot.app import App
from prepbot.core.views import MemberRef, RevealCard, SharedAnswer
from prepbot.platforms.discord.embeds import DESCRIPTION, TOTAL, render
from prepbot.store.models import Answer, Member
from tests.discord_fake import FakeDiscord
from tests.platforms.discord.test_discord_app import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    GUILD,
    OWNER,
    TEXT,
    bot_messages,
    command,
    running,
)

DAVE, ERIN, FRANK = 505, 506, 507
FORUM = 3000
PRIVATE = [{"name": "answers", "value": "private"}]
ANSWERS = {
    ALICE: "Ring all-reduce: each GPU sends 2(N-1)/N of the gradient",
    BOB: "A parameter server per shard",
    CAROL: "Hierarchical all-reduce inside each node first",
    DAVE: "Overlap the sync with the backward pass",
    ERIN: "Compress the gradients to 8 bits",
}
EDITED = "Bucketed ring all-reduce, overlapped with backward"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ADMIN, "ada", manage_guild=True)
        for user_id, name in (
            (ALICE, "alice"),
            (BOB, "bob"),
            (CAROL, "carol"),
            (DAVE, "dave"),
            (ERIN, "erin"),
            (FRANK, "frank"),
        ):
            server.add_member(GUILD, user_id, name)
        server.add_text_channel(GUILD, TEXT, "study")
        server.add_forum_channel(GUILD, FORUM, "prep-forum")
        with server.patch_discord():
            yield server


async def open_modal(fake: FakeDiscord, where: int, question: int, user: int) -> dict[str, Any]:
    """Press Answer on the question; return the modal the bot answered with."""
    pressed = await fake.press_button(GUILD, where, question, user, "prep:answer")
    await fake.wait_for(lambda: bool(fake.interaction_responses(pressed)))
    (response,) = fake.interaction_responses(pressed)
    assert response["kind"] == "callback"
    assert response["json"]["type"] == 9
    modal: dict[str, Any] = response["json"]["data"]
    return modal


def text_input(modal: dict[str, Any]) -> dict[str, Any]:
    """Return the modal's one text input."""
    (row,) = modal["components"]
    assert row["type"] == 1
    (field,) = row["components"]
    return dict(field)


async def submit(
    fake: FakeDiscord, where: int, modal: dict[str, Any], user: int, text: str
) -> tuple[str, str]:
    """Submit the modal with ``text``; return the interaction id and the private reply's words.

    A store slower than Discord's 3 s (a loaded machine) is deferred privately and answered
    by one follow-up; either way the member gets exactly one private reply.
    """
    submitted = await fake.submit_modal(GUILD, where, user, modal["custom_id"], {"text": text})

    def replied() -> bool:
        responses = fake.interaction_responses(submitted)
        return bool(responses) and (
            responses[0]["json"].get("type") == 4 or any(r["kind"] == "followup" for r in responses)
        )

    await fake.wait_for(replied)
    first, *rest = fake.interaction_responses(submitted)
    assert first["kind"] == "callback"
    if first["json"]["type"] == 5:  # deferred: "thinking…", privately, then the follow-up
        assert first["json"]["data"]["flags"] & 64
        (reply,) = rest
        assert reply["kind"] == "followup"
        words = reply["json"]
    else:
        assert first["json"]["type"] == 4
        assert not rest
        words = first["json"]["data"]
    assert words["flags"] & 64  # ephemeral
    return submitted, json.dumps(words["embeds"], ensure_ascii=False)


async def answers_of(app: App) -> dict[str, str]:
    """Return each answerer's stored answer text, by Discord user id."""
    async with app.db.transaction() as db:
        rows = await db.execute(
            select(Member.external_id, Answer.text).join(Answer, Answer.member_id == Member.id)
        )
        return {str(k): v for k, v in rows.all()}


async def settles_to(app: App, expected: dict[str, str]) -> None:
    """Wait until the stored answers are ``expected``."""
    deadline = time.monotonic() + 10
    while await answers_of(app) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await answers_of(app) == expected


def public_text(fake: FakeDiscord, *channels: int) -> str:
    """Return everything the bot posted in these channels and threads, as JSON text."""
    return json.dumps([bot_messages(fake, c) for c in channels], ensure_ascii=False)


async def private_round(app: App, fake: FakeDiscord, where: int, channel: int) -> int:
    """Run the private round's answers (edit, withdrawal, a replay); return the question's id.

    ``where`` is where the question (with its button) is: the text channel, or the forum
    post's thread; ``channel`` is the study group's channel.
    """
    for user, text in ANSWERS.items():
        modal = await open_modal(fake, where, question_id(fake, channel), user)
        assert not text_input(modal).get("value")  # nothing stored yet
        _, said = await submit(fake, where, modal, user, text)
        assert "stored" in said
    question = question_id(fake, channel)
    # Alice edits: the modal shows what she stored.
    modal = await open_modal(fake, where, question, ALICE)
    assert text_input(modal)["value"] == ANSWERS[ALICE]
    _, said = await submit(fake, where, modal, ALICE, EDITED)
    assert "updated" in said
    # Bob withdraws with an empty submission.
    modal = await open_modal(fake, where, question, BOB)
    _, said = await submit(fake, where, modal, BOB, "")
    assert "withdrawn" in said
    # Carol's edit is delivered twice: stored once, the second changes nothing.
    modal = await open_modal(fake, where, question, CAROL)
    twice, _ = await submit(fake, where, modal, CAROL, ANSWERS[CAROL] + ", then across nodes")
    await fake.redeliver(twice)
    expected = {
        str(ALICE): EDITED,
        str(CAROL): ANSWERS[CAROL] + ", then across nodes",
        str(DAVE): ANSWERS[DAVE],
        str(ERIN): ANSWERS[ERIN],
    }
    await settles_to(app, expected)
    return question


def question_id(fake: FakeDiscord, channel: int) -> int:
    """Return the id of the round's question: the bot's post, or the forum post's starter."""
    if channel == FORUM:
        (thread,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(FORUM)]
        return int(thread)
    (question,) = bot_messages(fake, channel)
    return int(question["id"])


def assert_button(message: dict[str, Any]) -> None:
    """Check the question carries exactly the Answer button."""
    (row,) = message["components"]
    (button,) = row["components"]
    assert button["type"] == 2
    assert button["style"] == 1
    assert button["label"] == "Answer"
    assert button["emoji"]["name"] == "✍️"
    assert button["custom_id"] == "prep:answer"


def assert_reveal(reveal: dict[str, Any]) -> None:
    """Check the reveal publishes the four standing answers, each once, and pings none of them."""
    shown = json.dumps(reveal["embeds"], ensure_ascii=False)
    for text in (EDITED, ANSWERS[CAROL] + ", then across nodes", ANSWERS[DAVE], ANSWERS[ERIN]):
        assert shown.count(text) == 1, text
    assert ANSWERS[ALICE] not in shown  # replaced by the edit
    assert ANSWERS[BOB] not in shown  # withdrawn
    assert "bob" not in shown
    for name in ("alice", "carol", "dave", "erin"):
        assert shown.count(f"**{name}**") == 1
    assert shown.index("alice") < shown.index("Key insights")  # the answers come first
    assert str(BOB) not in reveal["content"]


async def test_private_answers_by_modal_stay_hidden_until_the_reveal(
    database_url: str, fake: FakeDiscord
):
    async with running(database_url, fake) as (app, _):
        app.services.private.pace = 0.05
        said = await command(fake, ADMIN, "subscribe", PRIVATE)
        assert "private until the reveal" in said
        await command(fake, ADMIN, "post-now")
        question_msg = bot_messages(fake, TEXT)[0]
        assert_button(question_msg)
        assert "Answers are private until the reveal" in json.dumps(
            question_msg["embeds"], ensure_ascii=False
        )
        (thread_id,) = [t for t, thread in fake.threads.items() if thread["parent_id"] == str(TEXT)]
        assert thread_id == int(question_msg["id"])

        question = await private_round(app, fake, TEXT, TEXT)
        await fake.wait_for(lambda: "4 answers so far" in json.dumps(fake.message(question)))
        assert_button(fake.message(question))  # the edit keeps the button
        assert fake.edits_of(question)
        seen = public_text(fake, TEXT, thread_id)
        for text in (*ANSWERS.values(), EDITED):
            assert text not in seen
        for name in ("alice", "bob", "carol", "dave", "erin"):
            assert name not in seen

        # Frank replies in the thread: stored all the same, and he is reminded by DM.
        await fake.member_message(thread_id, FRANK, "Just shard it", guild_id=GUILD)
        await fake.wait_for(lambda: bool(fake.dms_to(FRANK)))
        (reminder,) = fake.dms_to(FRANK)
        assert "public" in json.dumps(reminder["embeds"])
        await fake.member_message(thread_id, FRANK, "and overlap", guild_id=GUILD)
        await settles_to(
            app,
            {
                str(ALICE): EDITED,
                str(CAROL): ANSWERS[CAROL] + ", then across nodes",
                str(DAVE): ANSWERS[DAVE],
                str(ERIN): ANSWERS[ERIN],
                str(FRANK): "Just shard it\n\nand overlap",
            },
        )
        await asyncio.sleep(0.2)
        assert len(fake.dms_to(FRANK)) == 1  # once per round

        await command(fake, ADMIN, "reveal-now")
        reveal = bot_messages(fake, thread_id)[-1]
        assert_reveal(reveal)
        (sent,) = fake.calls_to("POST", rf"/channels/{thread_id}/messages$")
        allowed = {str(u) for u in sent.json["allowed_mentions"]["users"]}
        assert allowed <= {str(ALICE), str(CAROL), str(DAVE), str(ERIN), str(FRANK)}
        assert sent.json["allowed_mentions"]["parse"] == []


async def test_the_answer_button_works_in_a_forum_post_and_after_a_restart(
    database_url: str, fake: FakeDiscord
):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe", PRIVATE, channel=FORUM)
        await command(fake, ADMIN, "post-now", channel=FORUM)
        thread_id = question_id(fake, FORUM)
        assert_button(fake.message(thread_id))
        modal = await open_modal(fake, thread_id, thread_id, ALICE)
        assert modal["custom_id"] == f"prep:answer:{thread_id}"
    # A new process: the button on the old post still opens the modal with the stored text.
    async with running(database_url, fake) as (app, _):
        app.services.private.pace = 0.05
        _, said = await submit(fake, thread_id, modal, ALICE, ANSWERS[ALICE])
        assert "stored" in said
        await settles_to(app, {str(ALICE): ANSWERS[ALICE]})
        again = await open_modal(fake, thread_id, thread_id, ALICE)
        assert text_input(again)["value"] == ANSWERS[ALICE]
        for user, text in ANSWERS.items():
            if user != ALICE:
                opened = await open_modal(fake, thread_id, thread_id, user)
                await submit(fake, thread_id, opened, user, text)
        await settles_to(app, {str(u): t for u, t in ANSWERS.items()})
        await fake.wait_for(lambda: "5 answers so far" in json.dumps(fake.message(thread_id)))
        assert fake.calls_to("PATCH", rf"/channels/{thread_id}/messages/{thread_id}$")
        assert ANSWERS[BOB] not in public_text(fake, thread_id)
        await command(fake, ADMIN, "reveal-now", channel=FORUM)
        reveal = bot_messages(fake, thread_id)[-1]
        shown = json.dumps(reveal["embeds"], ensure_ascii=False)
        for text in ANSWERS.values():
            assert shown.count(text) == 1


async def test_the_count_of_the_last_answer_before_a_shutdown_reaches_the_question(
    database_url: str, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
):
    async with running(database_url, fake) as _:
        await command(fake, ADMIN, "subscribe", PRIVATE)
        await command(fake, ADMIN, "post-now")
        question = question_id(fake, TEXT)
        modal = await open_modal(fake, TEXT, question, ALICE)
        await submit(fake, TEXT, modal, ALICE, ANSWERS[ALICE])
        # The process stops at once: the count edit under way must not meet a closed session.
    assert "1 answer so far" in json.dumps(fake.message(question), ensure_ascii=False)
    assert "could not show" not in caplog.text


async def test_prep_answer_as_a_slash_command_stores_privately_and_withdraws(
    database_url: str, fake: FakeDiscord
):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe", PRIVATE)
        await command(fake, ADMIN, "post-now")
        said = await command(fake, ALICE, "answer", [{"name": "text", "value": "Line one\nTwo"}])
        assert "stored" in said
        assert '"flags": 64' in said
        await settles_to(app, {str(ALICE): "Line one\nTwo"})
        said = await command(fake, ALICE, "answer", [{"name": "withdraw", "value": True}])
        assert "withdrawn" in said
        await settles_to(app, {})
        assert "Line one" not in public_text(fake, TEXT)

        # /prep today's private copy of the question has the button too: it answers the round.
        today = await fake.slash_command(GUILD, TEXT, BOB, "prep today", [])
        await fake.wait_for(
            lambda: any(r["kind"] == "followup" for r in fake.interaction_responses(today))
        )
        (shown,) = [r for r in fake.interaction_responses(today) if r["kind"] == "followup"]
        copy = fake.interactions[today].followups[shown["message_id"]]
        assert copy["flags"] & 64
        assert_button(copy)
        pressed = await fake.press_button(
            GUILD, TEXT, int(copy["id"]), BOB, "prep:answer", message=copy
        )
        await fake.wait_for(lambda: bool(fake.interaction_responses(pressed)))
        modal = fake.interaction_responses(pressed)[0]["json"]["data"]
        _, said = await submit(fake, TEXT, modal, BOB, ANSWERS[BOB])
        assert "stored" in said
        await settles_to(app, {str(BOB): ANSWERS[BOB]})


def test_a_reveal_of_many_long_private_answers_stays_within_discords_limits():
    answers = tuple(
        SharedAnswer(MemberRef(str(900 + n), f"member_{n}" * 3), "word " * 800) for n in range(300)
    )
    card = RevealCard(
        scenario_id="s",
        title="T" * 300,
        insights=tuple("insight " * 100 for _ in range(12)),
        trap_answer="trap " * 300,
        trap_why="why " * 100,
        follow_ups=tuple("follow " * 60 for _ in range(8)),
        source_author="someone",
        source_url="https://example.com",
        source_handle=None,
        is_round=True,
        shared=answers,
    )
    message = render(card)
    assert 2 <= len(message.embeds) <= 10
    assert sum(len(e) for e in message.embeds) <= TOTAL
    shared = message.embeds[0]
    assert shared.description is not None
    assert len(shared.description) <= DESCRIPTION
    assert "more answers that did not fit" in shared.description
    assert "member\\_0" in shared.description  # names are escaped, never mentions
    assert "<@" not in shared.description
    assert len(message.embeds[1].fields) <= 25
    assert all(len(f.value or "") <= 1024 for f in message.embeds[1].fields)


async def test_a_slow_database_still_opens_the_modal_and_acknowledges_the_answer_in_time(
    database_url: str, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
):
    async with running(database_url, fake) as (app, _):
        await command(fake, ADMIN, "subscribe", PRIVATE)
        await command(fake, ADMIN, "post-now")
        question = question_id(fake, TEXT)
        answers, commands = app.services.answers, app.services.commands
        load, store = answers.private_answer, commands.answer_privately

        async def slow_load(*args: Any) -> str:
            await asyncio.sleep(5)
            return await load(*args)

        async def slow_store(*args: Any) -> Any:
            await asyncio.sleep(4)
            return await store(*args)

        monkeypatch.setattr(answers, "private_answer", slow_load)
        monkeypatch.setattr(commands, "answer_privately", slow_store)
        started = time.monotonic()
        modal = await open_modal(fake, TEXT, question, ALICE)  # empty, but in time
        assert time.monotonic() - started < 3
        assert not text_input(modal).get("value")
        started = time.monotonic()
        submitted = await fake.submit_modal(
            GUILD, TEXT, ALICE, modal["custom_id"], {"text": ANSWERS[ALICE]}
        )
        await fake.wait_for(lambda: bool(fake.interaction_responses(submitted)))
        assert time.monotonic() - started < 3
        (deferred,) = fake.interaction_responses(submitted)
        assert deferred["json"]["type"] == 5
        assert deferred["json"]["data"]["flags"] & 64
        await fake.wait_for(
            lambda: any(r["kind"] == "followup" for r in fake.interaction_responses(submitted)),
            timeout=15,
        )
        (followup,) = [r for r in fake.interaction_responses(submitted) if r["kind"] == "followup"]
        assert "stored" in json.dumps(followup["json"]["embeds"])
        await settles_to(app, {str(ALICE): ANSWERS[ALICE]})
