"""The weekly digest on Slack: its picture uploaded with the digest as the comment, else text.

Driven through the real SlackPlatform and slack_sdk's files_upload_v2 against the loopback fake
(files.getUploadURLExternal, the upload URL, files.completeUploadExternal), as a member would
see the channel afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from prepbot.core.views import (
    DigestCard,
    DigestMember,
    DigestPoint,
    DigestRound,
    MemberRef,
)
from prepbot.platforms.slack.adapter import SlackPlatform
from prepbot.platforms.slack.blocks import (
    DIGEST_COMMENT_MAX,
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    digest_message,
    slack_length,
)
from prepbot.services.ports import ChannelUnavailable
from tests import digest_cards as cards
from tests.digest_cards import END, png
from tests.slack_fake import UPLOAD, FakeSlack

CHANNEL, OTHER = "C0DIGEST", "C0OTHER"
TEAM = "T0001"
# The fake's message timestamps count from 2026-01-01: a repair looking "since" then sees them.
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
ALICE, BOB = MemberRef("U0ALICE", "alice"), MemberRef("U0BOB", "bob *the* <builder>")


def digest_card(end: date = END, **changes: Any) -> DigestCard:
    """Return a two-round week whose names and titles carry Slack's special characters."""
    return cards.digest_card(
        end,
        people=(ALICE, BOB),
        titles=("Gradient sync across 8 GPUs", "RAG evals <&> drift"),
        link="https://example.slack.com/archives/C0DIGEST/p1",
        **changes,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def platform(fake: FakeSlack) -> SlackPlatform:
    slack = SlackPlatform(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
    slack.bot_user_id = fake.bot_user_id  # as SlackRuntime.start sets it from auth.test
    return slack


def digests_in(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """Return the bot's messages in a channel."""
    return [m for m in fake.messages.get(channel, []) if m.get("bot_id") == fake.bot_id]


def shared_files(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """Return the files shared in a channel's messages."""
    return [f for m in fake.messages.get(channel, []) for f in m.get("files") or []]


async def test_the_picture_is_uploaded_and_shared_with_the_digest_as_its_comment(
    fake: FakeSlack, platform: SlackPlatform
):
    card, picture = digest_card(), png()
    posted = await platform.post_digest(CHANNEL, card, picture, community_id=TEAM)

    (message,) = digests_in(fake, CHANNEL)
    (shared,) = message["files"]
    assert shared["name"] == card.picture_name == "prepbot-digest-2026-11-29.png"
    assert shared["mimetype"] == "image/png"
    assert posted == f"file:{shared['id']}"  # Slack's answer names the file, not the message
    assert fake.uploaded_files[shared["id"]] == (card.picture_name, picture)
    assert message["text"] == digest_message(card).text
    text = message["text"]
    assert text.startswith("*📅 Weekly digest — #study, Mon 23 Nov to Sun 29 Nov 2026*")
    assert "<https://example.slack.com/archives/C0DIGEST/p1|Gradient sync across 8 GPUs>" in text
    assert "5 answered on time, 2 late" in text
    assert "10 answers from 7 members" in text
    assert "• Use ring all-reduce — Gradient sync across 8 GPUs (6/7, 86%)" in text
    assert "• Check label drift — RAG evals &lt;&amp;&gt; drift (1/3, 33%)" in text
    assert "*alice* reached a 10-round streak" in text
    assert "1. *alice* — 2 on time · 9 key points · streak 10" in text
    assert "RAG evals &lt;&amp;&gt; drift" in text  # escaped, not parsed
    assert "*bob the &lt;builder&gt;*" in text
    assert "<@" not in text  # a digest names members; it pings nobody
    assert "<https://prep.example.org/archive/abc|" in text
    methods = [c.method for c in fake.calls if c.method != "auth.test"]
    assert methods == ["files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]
    (announced,) = fake.calls_to("files.getUploadURLExternal")
    assert announced.params["filename"] == card.picture_name
    assert int(announced.params["length"]) == len(picture)


@pytest.mark.parametrize("refusal", ["no files:write", "missing_scope", "size restricted"])
async def test_a_refused_upload_posts_the_digest_as_text_with_metadata_and_warns_once(
    fake: FakeSlack,
    platform: SlackPlatform,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
):
    if refusal == "no files:write":
        fake.bot_scopes.discard("files:write")
    elif refusal == "missing_scope":
        fake.fail_next("files.getUploadURLExternal", status=200, error="missing_scope", times=2)
    else:
        fake.max_upload_bytes = 10
    caplog.set_level(logging.INFO, "prepbot.platforms.slack.adapter")
    card = digest_card()
    posted = await platform.post_digest(CHANNEL, card, png(), community_id=TEAM)
    again = await platform.post_digest(OTHER, card, png(), community_id=TEAM)

    (message,) = digests_in(fake, CHANNEL)
    assert posted == message["ts"]
    assert "files" not in message
    assert message["metadata"] == {
        "event_type": "prepbot_digest",
        "event_payload": {"period_end": "2026-11-29"},
    }
    assert message["blocks"] == digest_message(card).blocks
    header = message["blocks"][0]["text"]["text"]
    assert header == "📅 Weekly digest — #study, Mon 23 Nov to Sun 29 Nov 2026"
    assert not shared_files(fake, CHANNEL)
    assert [m["ts"] for m in digests_in(fake, OTHER)] == [again]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per workspace and reason, not once per digest
    if refusal != "size restricted":
        assert "files:write" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "step", ["files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]
)
async def test_a_429_on_an_upload_step_is_waited_out_and_shares_one_file(
    fake: FakeSlack, platform: SlackPlatform, step: str
):
    fake.fail_next(step, status=429, retry_after=1)
    card, picture = digest_card(), png()
    started = time.monotonic()
    await platform.post_digest(CHANNEL, card, picture, community_id=TEAM)

    assert time.monotonic() - started >= 0.9  # the Retry-After was honoured
    assert len(fake.calls_to(step)) == 2
    (message,) = digests_in(fake, CHANNEL)
    (shared,) = shared_files(fake, CHANNEL)
    assert shared["name"] == card.picture_name
    assert message["text"] == digest_message(card).text
    assert fake.uploaded_files[shared["id"]][1] == picture
    assert not fake.calls_to("chat.postMessage")


async def test_a_server_error_on_completing_is_left_to_the_repair_and_posts_no_text(
    fake: FakeSlack, platform: SlackPlatform
):
    fake.fail_next("files.completeUploadExternal", status=500)
    card = digest_card()
    with pytest.raises(SlackApiError):
        await platform.post_digest(CHANNEL, card, png(), community_id=TEAM)
    assert not fake.calls_to("chat.postMessage")  # Slack may have shared it: no double
    assert await platform.find_digest(CHANNEL, card, since=SINCE) is None
    await platform.post_digest(CHANNEL, card, png(), community_id=TEAM)  # the repair's post
    assert len(digests_in(fake, CHANNEL)) == 1


async def test_find_digest_finds_the_upload_and_the_text_post_and_only_that_week(
    fake: FakeSlack, platform: SlackPlatform
):
    uploaded, text_only = digest_card(), digest_card(END + timedelta(weeks=1))
    await platform.post_digest(CHANNEL, uploaded, png(), community_id=TEAM)
    text_ts = await platform.post_digest(CHANNEL, text_only, None, community_id=TEAM)
    (share, text_post) = digests_in(fake, CHANNEL)

    assert await platform.find_digest(CHANNEL, uploaded, since=SINCE) == share["ts"]
    assert await platform.find_digest(CHANNEL, text_only, since=SINCE) == text_ts
    assert text_post["ts"] == text_ts
    earlier = digest_card(END - timedelta(weeks=1))
    assert await platform.find_digest(CHANNEL, earlier, since=SINCE) is None
    assert await platform.find_digest(OTHER, uploaded, since=SINCE) is None


async def test_a_members_file_of_the_same_name_is_not_taken_for_the_digest(
    fake: FakeSlack, platform: SlackPlatform
):
    card = digest_card()
    human = fake.add_message(CHANNEL, user="U0ALICE", text="look")
    human["files"] = [{"id": "F0HUMAN", "name": card.picture_name}]
    assert await platform.find_digest(CHANNEL, card, since=SINCE) is None


@pytest.mark.parametrize("picture", [True, False])
async def test_a_gone_channel_raises_channel_unavailable(
    fake: FakeSlack, platform: SlackPlatform, picture: bool
):
    fake.channel_errors[CHANNEL] = "channel_not_found"
    card = digest_card()
    with pytest.raises(ChannelUnavailable):
        await platform.post_digest(CHANNEL, card, png() if picture else None, community_id=TEAM)
    with pytest.raises(ChannelUnavailable):
        await platform.find_digest(CHANNEL, card, since=SINCE)
    if picture:  # a gone channel is not a refused upload: no text goes instead
        assert not fake.calls_to("chat.postMessage")


def test_a_huge_digest_stays_within_slacks_limits_and_keeps_the_archive_link():
    rounds = tuple(
        DigestRound(END - timedelta(days=n % 7), f"s{n}", "A long title " * 20, None, n, 1)
        for n in range(60)
    )
    points = tuple(DigestPoint("a key point " * 40, "t " * 80, 1, 2) for _ in range(20))
    leaders = tuple(
        DigestMember(MemberRef(f"U{n}", f"member {n} " * 5), n, 0, n, n) for n in range(40)
    )
    card = digest_card(rounds=rounds, most_covered=points, least_covered=points, leaders=leaders)
    message = digest_message(card)
    assert slack_length(message.text) <= DIGEST_COMMENT_MAX
    assert "…and more than fits in one message." in message.text
    assert message.text.rstrip().endswith("|the study group archive>")
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert slack_length(block["text"]["text"]) <= MAX_SECTION_TEXT
    assert "archive" in message.blocks[-1]["elements"][0]["text"]


def test_an_empty_week_says_so():
    card = digest_card(rounds=(), members=0, answers=0, leaders=(), milestones=())
    text = digest_message(card).text
    assert "No questions this week." in text
    assert "No answers this week." in text


async def test_a_long_digest_arrives_as_the_whole_folded_comment(
    fake: FakeSlack, platform: SlackPlatform
):
    # slack_sdk sends completeUploadExternal's initial_comment in the query string.
    leaders = tuple(
        DigestMember(MemberRef(f"U{n}", f"Zoë 🔥 member {n} — " * 4), n, 0, n, n) for n in range(60)
    )
    card = digest_card(leaders=leaders)
    await platform.post_digest(CHANNEL, card, png(), community_id=TEAM)
    (message,) = digests_in(fake, CHANNEL)
    assert message["text"] == digest_message(card).text
    assert slack_length(message["text"]) > DIGEST_COMMENT_MAX - 200
    assert message["files"][0]["name"] == card.picture_name


def test_an_error_without_a_json_body_has_an_empty_code_not_a_crash():
    """A proxy's HTML 502 (or a 405) reaches the adapter as a SlackApiError whose body is text."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.slack_response import SlackResponse

    from prepbot.platforms.slack.adapter import error_code

    def failed(data: Any) -> SlackApiError:
        response = SlackResponse(
            client=None,
            http_verb="GET",
            api_url="http://127.0.0.1/api/x",
            req_args={},
            data=data,
            headers={},
            status_code=502,
        )
        return SlackApiError("failed", response)  # type: ignore[no-untyped-call]

    assert error_code(failed("<html>Bad gateway</html>")) == ""
    assert error_code(failed({"ok": False, "error": "ratelimited"})) == "ratelimited"
