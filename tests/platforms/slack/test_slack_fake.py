"""The Slack fake is driven by the real slack_sdk clients over loopback and answers like Slack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

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


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def client_for(fake: FakeSlack, token: str = "xoxb-test", **kwargs) -> AsyncWebClient:
    return AsyncWebClient(base_url=fake.api_url, token=token, **kwargs)


async def test_auth_test_and_post_message_through_the_real_client(fake):
    client = client_for(fake)
    auth = await client.auth_test()
    assert (auth["team_id"], auth["user_id"], auth["bot_id"]) == ("T0001", "UBOT", "BBOT")

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Q1*"}}]
    first = await client.chat_postMessage(channel="C1", text="Q1", blocks=blocks)
    second = await client.chat_postMessage(channel="C1", text="Q2")
    assert first["ok"]
    assert first["channel"] == "C1"
    assert first["ts"] < second["ts"]
    assert first["message"]["bot_id"] == "BBOT"

    [call, _] = fake.calls_to("chat.postMessage")
    assert call.token == "xoxb-test"
    assert call.params == {"channel": "C1", "text": "Q1", "blocks": blocks}
    assert [m["text"] for m in fake.messages["C1"]] == ["Q1", "Q2"]
    assert fake.messages["C1"][0]["blocks"] == blocks


async def test_form_encoded_bodies_and_json_string_blocks_are_accepted(fake):
    blocks = [{"type": "divider"}]
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            fake.api_url + "chat.postMessage",
            data={"token": "xoxb-test", "channel": "C2", "blocks": json.dumps(blocks)},
        )
        body = await response.json()
    assert response.status == 200
    assert response.content_type == "application/json"
    assert body["ok"]
    [call] = fake.calls_to("chat.postMessage")
    assert call.token == "xoxb-test"
    assert call.params == {"channel": "C2", "blocks": blocks}


async def test_thread_replies_paginate_oldest_first(fake):
    client = client_for(fake)
    parent = await client.chat_postMessage(channel="C1", text="question")
    fake.add_message("C1", user="U1", text="a1", thread_ts=parent["ts"])
    await client.chat_postMessage(channel="C1", text="nudge", thread_ts=parent["ts"])
    fake.add_message("C1", user="U2", text="a2", thread_ts=parent["ts"])
    fake.add_message("C1", user="U3", text="elsewhere")

    pages = []
    async for page in await client.conversations_replies(channel="C1", ts=parent["ts"], limit=3):
        pages.append([m["text"] for m in page["messages"]])
    assert pages == [["question", "a1", "nudge"], ["a2"]]
    assert [m["text"] for m in fake.thread("C1", parent["ts"])] == [
        "question",
        "a1",
        "nudge",
        "a2",
    ]
    assert fake.thread("C1", parent["ts"])[0]["reply_count"] == 3

    with pytest.raises(SlackApiError) as missing:
        await client.conversations_replies(channel="C1", ts=next_ts())
    assert missing.value.response["error"] == "thread_not_found"


async def test_a_rate_limit_is_retried_after_retry_after(fake):
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    client = client_for(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    response = await client.chat_postMessage(channel="C1", text="hello")
    assert response["ok"]
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert [m["text"] for m in fake.messages["C1"]] == ["hello"]


async def test_without_a_retry_handler_429_and_500_and_error_faults_surface(fake):
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    fake.fail_next("chat.postMessage", status=500)
    fake.fail_next("chat.postMessage", status=200, error="msg_too_long")
    client = client_for(fake)
    seen = []
    for _ in range(3):
        with pytest.raises(SlackApiError) as failure:
            await client.chat_postMessage(channel="C1", text="x")
        response = failure.value.response
        seen.append((response.status_code, response["error"]))
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "7"
    assert seen == [(429, "ratelimited"), (500, "internal_error"), (200, "msg_too_long")]
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]


async def test_bad_tokens_and_unknown_methods_are_refused(fake):
    with pytest.raises(SlackApiError) as wrong:
        await client_for(fake, token="xoxb-wrong").chat_postMessage(channel="C1", text="x")
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as wrong_kind:
        await client_for(fake, token="xoxb-test").apps_connections_open(app_token="xoxb-test")
    assert wrong_kind.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as unknown:
        await client_for(fake).api_call("chat.teleport")
    assert unknown.value.response["error"] == "unknown_method"
    assert "C1" not in fake.messages


async def test_channel_errors_users_and_channel_info(fake):
    fake.channel_errors["CGONE"] = "channel_not_found"
    fake.channel_errors["COLD"] = "is_archived"
    fake.add_user("U1", "ada", admin=True)
    client = client_for(fake)
    for channel, error in (("CGONE", "channel_not_found"), ("COLD", "is_archived")):
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel=channel, text="x")
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError):
        await client.conversations_info(channel="CGONE")
    assert (await client.conversations_info(channel="COLD"))["channel"]["is_archived"] is True
    assert (await client.conversations_info(channel="C1"))["channel"]["is_archived"] is False

    user = (await client.users_info(user="U1"))["user"]
    assert (user["name"], user["is_admin"], user["is_owner"], user["is_bot"]) == (
        "ada",
        True,
        False,
        False,
    )
    with pytest.raises(SlackApiError) as nobody:
        await client.users_info(user="UNOBODY")
    assert nobody.value.response["error"] == "user_not_found"


async def test_update_and_ephemeral(fake):
    client = client_for(fake)
    posted = await client.chat_postMessage(channel="C1", text="v1")
    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="v2")
    assert updated["ts"] == posted["ts"]
    assert fake.messages["C1"][0]["text"] == "v2"
    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="psst")
    assert ephemeral["message_ts"]
    assert fake.ephemerals[0]["user"] == "U1"
    assert len(fake.messages["C1"]) == 1


async def test_response_urls_record_what_is_posted(fake):
    url = fake.response_url()
    webhook = AsyncWebhookClient(url)
    response = await webhook.send(text="only you", response_type="ephemeral")
    assert response.status_code == 200
    [(rid, body)] = fake.responses
    assert url.endswith(f"/respond/{rid}")
    assert body == {"text": "only you", "response_type": "ephemeral"}


async def test_socket_mode_client_receives_envelopes_and_acks(fake):
    received: list[SocketModeRequest] = []

    async def on_request(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    client = SocketModeClient(
        app_token="xapp-test", web_client=AsyncWebClient(base_url=fake.api_url)
    )
    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        await fake.wait_for_socket()
        [open_call] = fake.calls_to("apps.connections.open")
        assert open_call.token == "xapp-test"

        event = message_event("C1", "U1", "my answer", next_ts(), thread_ts=next_ts())
        envelope_id = await fake.send_envelope("events_api", event_callback(event))
        assert await fake.wait_ack(envelope_id) == {"envelope_id": envelope_id}
        [request] = received
        assert (request.type, request.retry_attempt) == ("events_api", 0)
        assert request.payload["event"] == event
        assert request.accepts_response_payload is False

        command = slash_command(
            "help", user_id="U1", user_name="ada", channel_id="C1", response_url=fake.response_url()
        )
        command_id = await fake.send_envelope("slash_commands", command)
        await fake.wait_ack(command_id)
        assert received[1].accepts_response_payload is True
        assert received[1].payload["command"] == "/prep"
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    await asyncio.sleep(0)


def test_signatures_verify_with_slack_sdk():
    body = b"token=x&command=%2Fprep&text=help"
    headers = sign(body, "s3cret")
    assert SignatureVerifier("s3cret").is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    stale = sign(body, "s3cret", timestamp=1)
    assert not SignatureVerifier("s3cret").is_valid_request(body, stale)


def test_event_builders_look_like_slack():
    parent, reply = next_ts(), next_ts()
    assert parent < reply
    wrapped = event_callback(message_event("C1", "U1", "hi", reply, thread_ts=parent))
    assert wrapped["type"] == "event_callback"
    assert wrapped["event_id"].startswith("Ev")
    assert wrapped["authorizations"][0]["team_id"] == "T0001"
    edit = message_changed_event(
        "C1", "U1", "better", reply, thread_ts=parent, edited_ts=next_ts(), previous_text="hi"
    )
    assert edit["message"]["ts"] == reply
    assert edit["ts"] != reply
    assert edit["message"]["thread_ts"] == parent
    gone = message_deleted_event("C1", reply, thread_ts=parent, user="U1")
    assert gone["deleted_ts"] == reply
    assert gone["previous_message"]["thread_ts"] == parent
