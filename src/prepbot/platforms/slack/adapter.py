"""The Slack adapter: a slack-bolt ``AsyncApp`` in Socket Mode or HTTP mode, translating only.

Message events in a round's thread become answers (stored before the event is acknowledged:
``process_before_response``); ``/prep`` is acknowledged at once and answered from a lazy
listener, so a slow database never misses Slack's 3 seconds. In a study group that answers
privately, the question's Answer button opens a modal (prefilled with the member's stored
answer); its submission is stored before it is acknowledged, so the modal closes only once the
answer is committed, and stays open with the reason when it could not be. The question's
running count is edited in place with ``chat.update``. Questions and reveals go out
through ``chat.postMessage`` with rate-limit and server-error retries; a weekly digest's picture
is uploaded with ``files_upload_v2`` (the digest's text as its comment), and the digest goes as
text alone when Slack refuses the upload (no ``files:write`` scope). A channel that is gone
raises ChannelUnavailable, which pauses only its own study group. In HTTP mode a request is
checked against Slack's signature before bolt sees it; a command or event from a workspace
this bot's token does not belong to is refused. Whether a member is an admin is asked again
after a short while. The only module, with ``blocks.py`` and ``events.py`` beside it, that
imports slack_bolt and slack_sdk.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from prepbot.core.events import (
    Invocation,
    Place,
    PrivateAnswer,
    ReplyDeleted,
    ReplyEdited,
    ThreadReply,
)
from prepbot.core.text import digest_title
from prepbot.core.views import (
    DigestCard,
    ErrorView,
    FeedbackView,
    MemberRef,
    Notice,
    QuestionCard,
    Response,
    RevealCard,
)
from prepbot.platforms.pacing import Backlog, HoldKey, Pacer
from prepbot.platforms.slack.blocks import (
    ANSWER_ACTION,
    SlackMessage,
    digest_message,
    escape,
    render,
)
from prepbot.platforms.slack.events import PLATFORM, thread_event
from prepbot.services import Services
from prepbot.services.answers import AnswerOutcome
from prepbot.services.ports import ChannelUnavailable, InFlight
from prepbot.settings import SlackSettings
from prepbot.store.models import Community, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)

CHANNEL_GONE = {
    "channel_not_found": "the channel was deleted or the bot cannot see it",
    "is_archived": "the channel is archived",
    "not_in_channel": "the bot was removed from the channel",
    "restricted_action": "the workspace does not let the bot post there",
    "team_access_not_granted": "the bot has no access to this workspace any more",
}
FEEDBACK_PER_MINUTE = 100  # chat.postEphemeral is in Slack's Tier 4 (100+ a minute)
CHANNEL_INTERVAL = 1.0  # seconds between two messages in one channel (Slack: 1 per second)
REACTION_BURST = 20  # reactions a workspace may get at once before the pace applies
REACTIONS_WAITING = 200  # reactions that may wait their turn per workspace (4 min at 50/min)
SIGNATURE_WINDOW = 5 * 60  # seconds a signed request stays valid (Slack's own rule)
TIMESTAMP = re.compile(r"[0-9]{1,12}")
ANOTHER_WORKSPACE = (
    "This prepbot serves another Slack workspace, so it cannot act here. Nothing was changed."
)
ANSWER_MODAL = "prep_answer_modal"  # callback id of the private answer modal
ANSWER_BLOCK, ANSWER_INPUT = "answer", "text"  # where the modal's answer text is
ANSWER_MAX = 3000  # characters a modal answer may have (Slack's plain_text_input allows 3,000)
MODAL_OUT_OF_DATE = (
    "This form could not be read, so nothing was saved. Copy your answer, close this and "
    "press Answer on the question again."
)


def web_client(settings: SlackSettings) -> AsyncWebClient:
    """Return a Web API client that waits out rate limits and retries server errors."""
    assert settings.bot_token is not None
    client = AsyncWebClient(
        token=settings.bot_token.get_secret_value(),
        base_url=settings.api_url,
        timeout=settings.request_timeout_seconds,  # type: ignore[arg-type]  # aiohttp takes float
    )
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client


class SlackPlatform:
    """Post rounds to Slack channels with chat.postMessage, within Slack's posting limits.

    Slack allows about one message a second per channel and "several hundred" a minute per
    workspace. Posts are paced per workspace (the team id the caller passes as
    ``community_id``) and per channel, so a fan-out to many workspaces runs them side by side
    instead of piling onto one and waiting out 429s. A 429 that still comes (another app on
    the token, a lower limit) holds its workspace and channel for the Retry-After, then the
    message is sent again: a 429 posted nothing, so nothing is doubled.
    """

    name = PLATFORM

    def __init__(
        self,
        client: AsyncWebClient,
        concurrency: int = 8,
        *,
        messages_per_minute_per_workspace: int = 300,
        rate_limit_retries: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.client = _answering_429s(client)  # this class waits out 429s itself
        self.bot_user_id: str | None = None  # the runtime sets it: a repair finds our uploads
        self._refused: set[tuple[str, str]] = set()  # (workspace, error) of refused uploads
        self._limit = asyncio.Semaphore(concurrency)
        self.rate_limit_retries = rate_limit_retries
        interval = 60 / messages_per_minute_per_workspace
        self._workspaces = Pacer(interval, clock=clock, sleep=sleep)
        self._channels = Pacer(CHANNEL_INTERVAL, clock=clock, sleep=sleep)
        # Ephemerals have their own rate tier: feedback never slows questions and reveals down.
        self._feedback = Pacer(60 / FEEDBACK_PER_MINUTE, clock=clock, sleep=sleep)

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        """Post the question of the day; its ts is the thread answers go to."""
        message = render(card)
        return await self._post(channel_id, message, None, community_id, _marker(QUESTION, card))

    async def post_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post the reveal in the round's thread."""
        message = render(card)
        return await self._post(channel_id, message, thread_id, community_id, _marker(REVEAL, card))

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Show a member their feedback in the round's thread, visible only to them.

        False when Slack will not show it (they left the channel); a 429 holds the workspace
        for its Retry-After and is tried again, since an ephemeral that was refused was not made.
        """
        return await self._ephemeral(channel_id, thread_id, member, render(feedback), community_id)

    async def _ephemeral(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        message: SlackMessage,
        community_id: str | None,
    ) -> bool:
        """Show a member a message in a thread, only to them; False when Slack will not."""
        try:
            await self._paced(
                [(self._feedback, community_id or "")],
                lambda: self.client.chat_postEphemeral(
                    channel=channel_id,
                    user=member.id,
                    text=message.text,
                    blocks=message.blocks,
                    thread_ts=thread_id,
                ),
            )
        except SlackApiError as error:
            if error_code(error) in NOT_SHOWN_TO_MEMBER:
                return False
            raise
        return True

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        """Edit a private-mode question in place to show its running count, keeping its metadata.

        Paced like a post in its channel and workspace; a 429 holds them and is tried again.
        """
        message = render(card)
        marker = _marker(QUESTION, card)  # a repair's find_question must still find the post

        def update() -> Awaitable[Any]:
            self._channels.sent(channel_id)
            return self.client.chat_update(
                channel=channel_id,
                ts=thread_id,
                text=message.text,
                blocks=message.blocks,
                metadata=marker,
            )

        await self._paced(
            [(self._channels, channel_id), (self._workspaces, community_id or "")], update
        )

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Show a member one line in the round's thread, visible only to them.

        False when Slack will not show it (they left the channel); paced like feedback.
        """
        return await self._ephemeral(
            channel_id, thread_id, member, render(Notice(text)), community_id
        )

    async def acknowledge(self, channel_id: str, message_id: str, on_time: bool) -> None:
        """React to a stored answer: ✅ on time, 🕓 late; a reaction already there is fine."""
        try:
            await self.client.reactions_add(
                channel=channel_id,
                timestamp=message_id,
                name=ON_TIME_REACTION if on_time else LATE_REACTION,
            )
        except SlackApiError as error:
            if error_code(error) != "already_reacted":
                raise

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Look in the channel's newest messages for the bot's post of this round.

        Every post carries message metadata naming its round, so it is found even when the
        process that posted it died or Slack answered too late to tell us its ts. The newest
        1,000 messages are searched rather than those since ``since``: a clock that is off
        between this host and Slack must not hide the post.
        """
        wanted = _marker(QUESTION, card)
        async for message in self._history(self.client.conversations_history, channel=channel_id):
            if _carries(message, wanted):
                return str(message["ts"])
        return None

    async def find_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Look in the round's thread for the bot's reveal of it."""
        wanted = _marker(REVEAL, card)
        async for message in self._history(
            self.client.conversations_replies, channel=channel_id, ts=thread_id
        ):
            if _carries(message, wanted):
                return str(message["ts"])
        return None

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post a weekly digest: its picture uploaded with the digest's text as the comment.

        The upload (files_upload_v2) is paced like a post; a 429 from any of its steps holds
        and is tried again: a 429 shared nothing. When Slack refuses the upload (no
        ``files:write``, a file error) a warning is logged once per workspace and reason, and
        the digest is posted as text alone, with message metadata a repair finds it by. A
        server error or a lost answer is raised as it is: completeUploadExternal may have
        shared the file, so the repair looks (``find_digest``) before it posts again.

        Returns the ts of a digest posted as text. An upload returns the ts of the message
        that shares the file when Slack's answer names it, else ``file:<file id>``: Slack's
        completeUploadExternal answers with the file's id and title only, and shares the file
        a moment later (``files.info`` would need the files:read scope).
        """
        workspace = community_id or ""
        message = digest_message(card)
        if picture is not None:
            try:
                return await self._upload_digest(channel_id, card, picture, message, workspace)
            except SlackApiError as error:
                status = error.response.status_code
                if status >= 500 or status == 429:  # may have shared it; or still rate-limited
                    raise
                self._upload_refused(workspace, error_code(error))
            except SlackRequestError as error:  # the bytes were refused: nothing was shared
                self._upload_refused(workspace, str(error))
        return await self._post(channel_id, message, None, community_id, _digest_marker(card))

    async def _upload_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes,
        message: SlackMessage,
        workspace: str,
    ) -> str:
        """Upload a digest's picture into its channel; return the sharing message's ts or id."""

        def upload() -> Awaitable[Any]:
            self._channels.sent(channel_id)
            return self.client.files_upload_v2(
                channel=channel_id,
                file=picture,
                filename=card.picture_name,
                title=digest_title(card),
                alt_txt=f"{digest_title(card)}: the week's answers, coverage and streaks",
                initial_comment=message.text,
            )

        response = await self._paced(
            [(self._channels, channel_id), (self._workspaces, workspace)], upload
        )
        files = response.get("files") or []
        uploaded = files[0] if files and isinstance(files[0], dict) else {}
        shares = uploaded.get("shares") or {}
        for kind in ("public", "private"):
            for share in (shares.get(kind) or {}).get(channel_id) or []:
                if share.get("ts"):
                    return str(share["ts"])
        return f"file:{uploaded.get('id', '')}"

    def _upload_refused(self, workspace: str, reason: str) -> None:
        """Log, once per workspace and reason, that a digest goes without its picture."""
        if (workspace, reason) in self._refused:
            log.info("Slack refused a digest picture (%s); posting the text alone", reason)
            return
        self._refused.add((workspace, reason))
        hint = " (give the Slack app the files:write scope)" if reason == "missing_scope" else ""
        log.warning(
            "Slack refused to upload a digest picture in workspace %s: %s%s; digests there "
            "are posted as text alone",
            workspace or "unknown",
            reason,
            hint,
        )

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Look in the channel's messages since ``since`` for the bot's post of this digest.

        An upload is found by its file's name (unique per group and week), a text-only post
        by its metadata. ``since`` is taken an hour early: a clock that is off between this
        host and Slack must not hide the post.
        """
        wanted = _digest_marker(card)
        oldest = f"{(since - DIGEST_CLOCK_SLACK).timestamp():.6f}"
        async for message in self._history(
            self.client.conversations_history, channel=channel_id, oldest=oldest
        ):
            if _carries(message, wanted):
                return str(message["ts"])
            from_bot = bool(message.get("bot_id")) or (
                self.bot_user_id is not None and message.get("user") == self.bot_user_id
            )
            files = message.get("files") or []
            if from_bot and any(
                isinstance(f, dict) and f.get("name") == card.picture_name for f in files
            ):
                return str(message["ts"])
        return None

    async def _history(
        self, method: Callable[..., Awaitable[Any]], **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the messages a history method returns, page by page, a few pages at most."""
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            try:
                page = await method(
                    **params,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            except SlackApiError as error:
                code = error_code(error)
                if code in CHANNEL_GONE:
                    raise ChannelUnavailable(f"Slack: {code} ({CHANNEL_GONE[code]})") from None
                raise
            for message in page.get("messages") or []:
                if isinstance(message, dict):
                    yield message
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    async def _post(
        self,
        channel_id: str,
        message: SlackMessage,
        thread_ts: str | None,
        team_id: str | None,
        marker: dict[str, Any],
    ) -> str:
        """Send one message when its channel and workspace allow; wait out and retry 429s."""
        workspace = team_id or ""  # a caller that does not know shares one conservative pace

        def post() -> Awaitable[Any]:
            self._channels.sent(channel_id)
            return self.client.chat_postMessage(
                channel=channel_id,
                text=message.text,
                blocks=message.blocks,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata=marker,
            )

        response = await self._paced(
            [(self._channels, channel_id), (self._workspaces, workspace)], post
        )
        return str(response["ts"])

    async def _paced(
        self, pacers: list[tuple[Pacer, str]], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Make one Web API call when its pacers allow; wait out and retry 429s.

        A channel that is gone raises ChannelUnavailable; any other error is raised as is. A
        429 made nothing, so it holds every pacer of the call for its Retry-After and tries
        again, up to ``rate_limit_retries`` times.
        """
        for attempt in range(self.rate_limit_retries + 1):
            for pacer, key in pacers:
                await pacer.wait(key)
            async with self._limit:
                try:
                    return await call()
                except SlackApiError as error:
                    code = error_code(error)
                    if code in CHANNEL_GONE:
                        raise ChannelUnavailable(f"Slack: {code} ({CHANNEL_GONE[code]})") from None
                    if error.response.status_code != 429 or attempt == self.rate_limit_retries:
                        raise
                    wait = _retry_after(error.response.headers)
            log.warning(
                "Slack rate-limited a call (%s); holding it for %.0f s",
                ", ".join(key or "unknown workspace" for _, key in pacers),
                wait,
            )
            for pacer, key in pacers:
                pacer.hold(key, wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


QUESTION, REVEAL, DIGEST = "prepbot_question", "prepbot_reveal", "prepbot_digest"
DIGEST_CLOCK_SLACK = timedelta(hours=1)  # a digest is looked for from this long before `since`
ON_TIME_REACTION, LATE_REACTION = "white_check_mark", "clock4"  # ✅ and 🕓
NOT_SHOWN_TO_MEMBER = {"user_not_in_channel", "user_not_found", "user_disabled"}
LOOKUP_PAGES = 5  # pages of 200 messages a repair looks through for the bot's own post


def _marker(kind: str, card: QuestionCard | RevealCard) -> dict[str, Any]:
    """Return the message metadata that names the round a question or reveal belongs to."""
    round_date = card.round_date if isinstance(card, QuestionCard) else None
    payload = {"scenario": card.scenario_id, "date": f"{round_date or ''}"}
    return {"event_type": kind, "event_payload": payload}


def _digest_marker(card: DigestCard) -> dict[str, Any]:
    """Return the message metadata that names the week a text-only digest sums up."""
    return {"event_type": DIGEST, "event_payload": {"period_end": card.period_end.isoformat()}}


def _carries(message: dict[str, Any], marker: dict[str, Any]) -> bool:
    """Say whether a message from history carries a round's metadata (so it is the bot's)."""
    metadata = message.get("metadata")
    return (
        isinstance(metadata, dict)
        and metadata.get("event_type") == marker["event_type"]
        and metadata.get("event_payload") == marker["event_payload"]
    )


def _answering_429s(client: AsyncWebClient) -> AsyncWebClient:
    """Return a client like ``client`` that retries nothing by itself when posting.

    SlackPlatform waits out a 429 itself (a 429 posted nothing), so the wait holds the whole
    workspace and is not spent holding a connection slot. A 5xx or a dropped connection may
    come after Slack made the message, and chat.postMessage has no idempotency key: sending
    again there could post twice. Those failures go to the round's repair instead, which
    looks for the message (by its metadata) before posting again. The one exception is a
    429 from a file upload URL (step 2 of files_upload_v2), waited out in place.
    """
    poster = copy.copy(client)
    poster.retry_handlers = [_UploadRateLimits(client.base_url)]
    return poster


class _UploadRateLimits(AsyncRateLimitErrorRetryHandler):
    """Wait out a 429 from a file upload URL, and nothing else.

    slack_sdk reports a refused upload of the bytes as a SlackRequestError that carries no
    headers, so the Retry-After could not reach SlackPlatform's own wait; the bytes were not
    taken and nothing was shared, so sending them again doubles nothing. A Web API method's
    429 still comes to SlackPlatform, which holds the workspace.
    """

    def __init__(self, api_url: str, max_retry_count: int = 5) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.api_url = api_url

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        """Say whether this is a rate-limited upload of a file's bytes."""
        uploading = not request.url.startswith(self.api_url)
        return uploading and response is not None and response.status_code == 429


def error_code(error: SlackApiError) -> str:
    """Return a Web API error's code ("ratelimited", "channel_not_found"; "" if none).

    A proxy's HTML 502 or a 405 carries no JSON body: its code is "", never a crash.
    """
    data = error.response.data
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _retry_after(headers: Any) -> float:
    """Return a 429's Retry-After in seconds (1 when it is missing or unreadable)."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0


class SlackRuntime:
    """One Slack workspace connection: the bolt app, its listeners and its transport."""

    def __init__(self, settings: SlackSettings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.client = web_client(settings)
        self.platform = SlackPlatform(
            self.client,
            messages_per_minute_per_workspace=settings.messages_per_minute_per_workspace,
        )
        self.team_id = ""
        self.enterprise_id: str | None = None  # set only for an org-wide (Enterprise Grid) install
        self.bot_user_id: str | None = None
        self.in_flight = InFlight()
        self.reactions = Backlog(
            settings.reactions_per_minute, burst=REACTION_BURST, limit=REACTIONS_WAITING
        )
        self._names: dict[str, str] = {}
        self._admins: dict[str, tuple[bool, datetime]] = {}  # answer, when Slack gave it
        self._foreign_teams: set[str] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None
        signing = settings.signing_secret.get_secret_value() if settings.signing_secret else None
        self._verifier = SignatureVerifier(signing) if signing else None
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing,
            process_before_response=True,
            # _http checks signatures itself: bolt's check logs each refused body at INFO.
            request_verification_enabled=False,
        )
        self.app.use(self._only_own_workspace)
        self.app.event("message")(self._on_message)
        self.app.command("/prep")(ack=self._ack_prep, lazy=[self._run_prep])
        self.app.action(ANSWER_ACTION)(ack=self._ack_prep, lazy=[self._open_answer])
        self.app.view(ANSWER_MODAL)(self._on_answer_submitted)

    def share_connections(self) -> None:
        """Send posts through one HTTP session (slack_sdk opens one per call without it).

        Only the poster's client gets it: bolt deep-copies the app's client for lazy
        listeners, and a session cannot be copied. slack_sdk applies its own timeout only to
        sessions it opens, so this one carries ``request_timeout_seconds`` itself (else a post
        would wait aiohttp's five minutes). Call inside the running event loop; ``stop``
        closes it.
        """
        if self._session is None:
            patience = aiohttp.ClientTimeout(total=self.settings.request_timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=patience)
            self.platform.client.session = self._session

    async def start(self) -> None:
        """Check the token, pick up replies missed while down, then start listening."""
        self.share_connections()
        identity = await self.client.auth_test()
        self.team_id, self.bot_user_id = str(identity["team_id"]), identity.get("user_id")
        self.platform.bot_user_id = self.bot_user_id
        if identity.get("is_enterprise_install") and identity.get("enterprise_id"):
            self.enterprise_id = str(identity["enterprise_id"])
        self.services.ctx.platforms[PLATFORM] = self.platform
        await self.catch_up_replies()
        if self.settings.mode == "socket":
            assert self.settings.app_token is not None
            self._socket = AsyncSocketModeHandler(
                self.app, self.settings.app_token.get_secret_value()
            )  # its client opens the connection through self.client, so through api_url
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
        else:
            web_app = web.Application()
            web_app.router.add_post(self.settings.http_path, self._http)
            self._runner = web.AppRunner(web_app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
            await site.start()
            self.port = int(self._runner.addresses[0][1])
        log.info("connected to Slack workspace %s (%s mode)", self.team_id, self.settings.mode)

    async def stop(self) -> None:
        """Stop listening, let events being handled finish storing, close the connections."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.in_flight.drain()
        if dropped := await self.reactions.finish(timeout=2):
            log.info("stopping: %d answers stored but not reacted to", dropped)
        await self.services.private.drain(timeout=5)  # counts still editing posts
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def connected(self) -> bool:
        """Say whether Slack can reach us: the socket is open, or the endpoint is listening."""
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return self._runner is not None

    async def _http(self, request: web.Request) -> web.Response:
        """Hand a request to bolt once its Slack signature checks out; refuse it otherwise."""
        body = await request.read()
        problem = self._signature_problem(body, request.headers)
        if problem is not None:  # one line, never the body: it holds what members wrote
            log.info("refused a request to %s from %s: %s", request.path, request.remote, problem)
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = await to_bolt_request(request)
        except ValueError:  # a signed body that is not UTF-8, JSON or a form (not from Slack)
            log.warning("refused a signed request to %s: its body cannot be read", request.path)
            return web.json_response({"error": "unreadable request"}, status=400)
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    def _signature_problem(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Say what is wrong with a request's Slack signature, or None if Slack signed it."""
        if self._verifier is None:
            return "no signing secret is configured"
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        if not signature:
            return "it is not signed"
        if not TIMESTAMP.fullmatch(timestamp):
            return "its timestamp is missing or not a number"
        if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW:
            return "it was signed more than 5 minutes away from now (replayed, or a clock is off)"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "its body is not UTF-8"
        if not self._verifier.is_valid(text, timestamp, signature):
            return "its signature is wrong (is slack.signing_secret this app's?)"
        return None

    # Workspaces.

    def serves(self, team_id: str | None, enterprise_id: str | None) -> bool:
        """Say whether a request from this workspace (or org) is one this bot's token acts in.

        A request that names no workspace is taken as this one's, as the listeners do.
        """
        if team_id is None and enterprise_id is None:
            return True
        if team_id == self.team_id:
            return True
        return self.enterprise_id is not None and enterprise_id == self.enterprise_id

    async def _only_own_workspace(
        self,
        context: AsyncBoltContext,
        body: dict[str, Any],
        next: Callable[[], Awaitable[None]],
    ) -> BoltResponse | None:
        """Refuse commands, events and modals from a workspace this bot's token does not belong to.

        A command is answered with one private line, and a modal stays open with it; an event
        or a button press is acknowledged, so Slack does not send it again, and dropped.
        Nothing is read or written.
        """
        if self.serves(context.team_id, context.enterprise_id):
            await next()
            return None
        team = str(context.team_id or context.enterprise_id)
        if team not in self._foreign_teams:
            self._foreign_teams.add(team)
            log.warning(
                "ignoring requests from Slack workspace %s: this bot's token belongs to %s "
                "(is the app installed in another workspace?)",
                team,
                self.team_id,
            )
        if body.get("type") == "view_submission":
            refused = {"response_action": "errors", "errors": {ANSWER_BLOCK: ANOTHER_WORKSPACE}}
            return BoltResponse(status=200, body=refused)
        if context.response_url is None:
            return BoltResponse(status=200, body="")
        return BoltResponse(
            status=200, body={"response_type": "ephemeral", "text": ANOTHER_WORKSPACE}
        )

    # Answers.

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """Store a thread reply, edit or deletion; Slack is acknowledged after this returns."""
        async with self.in_flight.track():
            await self._store_message(event, body)

    async def _store_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        team_id = str(body.get("team_id") or self.team_id)
        neutral = thread_event(event, team_id, self.bot_user_id)
        if neutral is None:
            return
        answers = self.services.answers
        if isinstance(neutral, ReplyDeleted):
            await answers.withdraw(neutral)
            return
        named = await self._with_name(neutral)
        if isinstance(named, ReplyEdited):
            await answers.edit(named)
        else:
            self._acknowledge(named, await answers.record(named))

    def _acknowledge(self, reply: ThreadReply, outcome: AnswerOutcome) -> None:
        """React to a newly stored answer in the background; Slack's ack does not wait for it.

        Reactions keep to ``reactions_per_minute`` per workspace; one that would wait behind
        a full backlog is skipped and counted (the answer is stored all the same).
        """
        on_time = outcome.newly_stored
        if on_time is None:
            return
        react = partial(self._react, reply, on_time)
        if not self.reactions.submit(reply.place.community_id, react):
            self.services.ctx.metrics.reactions_skipped.labels(PLATFORM).inc()

    async def _react(self, reply: ThreadReply, on_time: bool) -> None:
        try:
            await self.platform.acknowledge(reply.place.channel_id, reply.message_id, on_time)
        except Exception as error:  # the answer is stored; only its reaction is missing
            if isinstance(error, SlackApiError) and error.response.status_code == 429:
                raise HoldKey(_retry_after(error.response.headers)) from error  # added nothing
            log.warning("could not react to answer %s: %r", reply.message_id, error)

    async def _with_name(self, event: ThreadReply | ReplyEdited) -> ThreadReply | ReplyEdited:
        name = await self.display_name(event.member.id)
        return replace(event, member=MemberRef(event.member.id, name))

    async def display_name(self, user_id: str) -> str:
        """Return a member's display name (cached; their id if Slack cannot say)."""
        if user_id not in self._names:
            await self._user(user_id)
        return self._names.get(user_id, user_id)

    async def _user(self, user_id: str) -> None:
        try:
            user = (await self.client.users_info(user=user_id))["user"]
        except SlackApiError as error:
            log.warning("users.info %s failed: %s", user_id, error_code(error) or error)
            return
        profile = user.get("profile") or {}
        self._names[user_id] = (
            profile.get("display_name") or profile.get("real_name") or user.get("name") or user_id
        )
        admin = bool(user.get("is_admin") or user.get("is_owner"))
        self._admins[user_id] = (admin, self.services.ctx.clock.now())

    async def is_admin(self, user_id: str) -> bool:
        """Say whether a member is a workspace admin/owner or listed in the settings.

        Slack's answer is trusted for ``admin_recheck_seconds``, then asked again; when Slack
        cannot say, the member is not an admin (admin commands are refused, nothing changes).
        """
        if user_id in self.settings.admin_ids:
            return True
        if not self._fresh_admin_answer(user_id):
            self._admins.pop(user_id, None)
            await self._user(user_id)
        admin, _ = self._admins.get(user_id, (False, None))
        return admin

    def _fresh_admin_answer(self, user_id: str) -> bool:
        if user_id not in self._admins:
            return False
        _, asked = self._admins[user_id]
        age = self.services.ctx.clock.now() - asked
        return timedelta(0) <= age < timedelta(seconds=self.settings.admin_recheck_seconds)

    async def catch_up_replies(self) -> int:
        """Record replies posted to open rounds while the bot was away; return how many."""
        async with self.services.ctx.db.transaction() as session:
            rounds = (
                await session.execute(
                    select(Subscription.channel_id, Round.question_message_id)
                    .join(Round, Round.subscription_id == Subscription.id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Community.platform == PLATFORM,
                        Community.external_id == self.team_id,
                        Round.status == RoundStatus.POSTED,
                    )
                )
            ).all()
        recorded = 0
        for channel, thread_ts in rounds:
            if thread_ts is None:
                continue
            cursor: str | None = None
            while True:
                try:
                    page = await self.client.conversations_replies(
                        channel=channel, ts=thread_ts, cursor=cursor, limit=200
                    )
                except SlackApiError as error:
                    log.warning("cannot read thread %s in %s: %s", thread_ts, channel, error)
                    break
                messages: list[dict[str, Any]] = page.get("messages", [])
                for message in messages:
                    event = dict(message, type="message", channel=channel)
                    neutral = thread_event(event, self.team_id, self.bot_user_id)
                    if isinstance(neutral, ThreadReply):
                        outcome = await self.services.answers.record(await self._with_name(neutral))
                        recorded += outcome.status.value in {"recorded", "late"}
                        self._acknowledge(neutral, outcome)
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        if recorded:
            log.info("picked up %s replies posted while the bot was away", recorded)
        return recorded

    # Private answers.

    async def _open_answer(self, body: dict[str, Any]) -> None:
        """Open the private answer modal for the question whose Answer button was pressed."""
        async with self.in_flight.track():
            user_id = str((body.get("user") or {}).get("id", ""))
            container = body.get("container") or {}
            message = body.get("message") or {}
            channel = str((body.get("channel") or {}).get("id") or container.get("channel_id", ""))
            thread_ts = str(container.get("message_ts") or message.get("ts") or "")
            team_id = str((body.get("team") or {}).get("id") or self.team_id)
            if not (user_id and channel and thread_ts and body.get("trigger_id")):
                log.warning("ignored an Answer press that names no member, question or trigger")
                return
            place = Place(PLATFORM, team_id, channel)
            stored = await self.services.answers.private_answer(place, thread_ts, user_id)
            metadata = {"channel": channel, "thread_ts": thread_ts, "team_id": team_id}
            try:
                await self.client.views_open(
                    trigger_id=str(body["trigger_id"]), view=answer_modal(stored, metadata)
                )
            except SlackApiError as error:  # the press expired (3 s): pressing again works
                log.warning("could not open the answer modal: %s", error_code(error) or error)

    async def _on_answer_submitted(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        """Store a submitted private answer, then close the modal; on failure keep it open."""
        async with self.in_flight.track():
            answer = await self._private_answer(body, view)
            if answer is None:
                await ack(response_action="errors", errors={ANSWER_BLOCK: MODAL_OUT_OF_DATE})
                return
            response = await self.services.commands.answer_privately(answer)
            problem = next((v for v in response.views if isinstance(v, ErrorView)), None)
            if problem is not None:  # nothing stored: the modal stays open with the text
                await ack(response_action="errors", errors={ANSWER_BLOCK: problem.text})
                return
            await ack()
            for shown in response.views:
                if isinstance(shown, Notice):
                    self.in_flight.spawn(self._notify(answer, shown.text))

    async def _private_answer(
        self, body: dict[str, Any], view: dict[str, Any]
    ) -> PrivateAnswer | None:
        """Read a modal submission as a private answer; None when it cannot be read."""
        try:
            metadata = json.loads(str(view.get("private_metadata") or ""))
            channel, thread_ts = str(metadata["channel"]), str(metadata["thread_ts"])
            team_id = str(metadata.get("team_id") or self.team_id)
        except (ValueError, KeyError, TypeError):
            return None
        user_id = str((body.get("user") or {}).get("id", ""))
        view_id = str(view.get("id", ""))
        if not (user_id and view_id and channel and thread_ts):
            return None
        values = ((view.get("state") or {}).get("values") or {}).get(ANSWER_BLOCK) or {}
        text = str((values.get(ANSWER_INPUT) or {}).get("value") or "")
        # The same submission delivered twice has one id; the modal sent again edited, a new one.
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        return PrivateAnswer(
            Place(PLATFORM, team_id, channel),
            thread_ts,
            f"{view_id}:{digest}",
            MemberRef(user_id, await self.display_name(user_id)),
            text,
            self.services.ctx.clock.now(),
        )

    async def _notify(self, answer: PrivateAnswer, text: str) -> None:
        """Tell a member, only them, what became of their private answer."""
        place = answer.place
        try:
            await self.platform.send_notice(
                place.channel_id,
                answer.thread_id or "",
                answer.member,
                text,
                community_id=place.community_id,
            )
        except Exception as error:  # the answer is stored; only the confirmation is missing
            log.warning("could not confirm a private answer to %s: %r", answer.member.id, error)

    # /prep

    async def _ack_prep(self, ack: Callable[..., Awaitable[None]]) -> None:
        """Acknowledge at once; the answer follows from the lazy listener."""
        await ack()

    async def _run_prep(self, body: dict[str, Any], respond: Callable[..., Awaitable[Any]]) -> None:
        """Run a /prep command and answer it, privately where the result is personal."""
        async with self.in_flight.track():
            await self._prep(body, respond)

    async def _prep(self, body: dict[str, Any], respond: Callable[..., Awaitable[Any]]) -> None:
        user_id = str(body.get("user_id", ""))
        text = str(body.get("text", ""))
        place = Place(
            PLATFORM,
            str(body.get("team_id") or self.team_id),
            str(body.get("channel_id", "")),
            str(body.get("team_domain", "")),
            str(body.get("channel_name", "")),
        )
        member = MemberRef(user_id, await self.display_name(user_id))
        admin = await self.is_admin(user_id)  # every command: help, too, lists admin commands
        request_id = str(body.get("trigger_id", ""))
        response = await self.services.commands.handle(
            Invocation(place, member, admin, text, request_id)
        )
        await self._respond(respond, response)

    @staticmethod
    async def _respond(respond: Callable[..., Awaitable[Any]], response: Response) -> None:
        """Answer a command; a public answer names members without pinging them."""
        for view in response.views:
            message = (
                render(view)
                if response.private
                else render(view, mention=lambda member: f"*{escape(member.name)}*")
            )
            await respond(
                text=message.text,
                blocks=message.blocks,
                response_type="ephemeral" if response.private else "in_channel",
            )


def answer_modal(stored: str, metadata: dict[str, str]) -> dict[str, Any]:
    """Return the private answer modal, prefilled with the member's stored answer if any."""
    field: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ANSWER_INPUT,
        "multiline": True,
        "max_length": ANSWER_MAX,
        "placeholder": {"type": "plain_text", "text": "Write your answer…"},
    }
    if stored:
        field["initial_value"] = stored[:ANSWER_MAX]
    return {
        "type": "modal",
        "callback_id": ANSWER_MODAL,
        "title": {"type": "plain_text", "text": "Your answer"},
        "submit": {"type": "plain_text", "text": "Save privately"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(metadata),
        "blocks": [
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "🔒 Hidden from everyone until the reveal, which publishes it "
                        "with your name. Empty it and save to withdraw it.",
                    }
                ],
            },
            {
                "type": "input",
                "block_id": ANSWER_BLOCK,
                "optional": True,  # an empty submission withdraws the answer
                "label": {"type": "plain_text", "text": "Your answer"},
                "element": field,
            },
        ],
    }
