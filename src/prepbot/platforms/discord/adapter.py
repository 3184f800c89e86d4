"""The Discord adapter: a discord.py client with a ``/prep`` command group, translating only.

The question is an embed with a public thread started from it (or a forum post); answers
are the thread's messages (message-content intent): new, edited and deleted messages map to
the answer, bots never count, and a resumed session that replays events changes nothing
(answers are keyed by message id). At start-up and after a reconnect, replies made while the
bot was away are read from the threads' history. Discord never sends an event twice, so one
the database fails to store is tried again, with a backoff, for about a minute. Every
interaction is deferred at once and answered from the services; whatever fails on the way (an
unknown or outdated command, an option value the command cannot take, an error inside it)
still gets a private, specific reply from the command tree's error handler. Admin = *Manage
Server* or a configured member id.

In a study group that answers privately, the question carries an Answer button (a persistent
view, so a button on yesterday's message still works after a restart). Pressing it opens a
modal holding the member's stored answer; the modal's submission is handled from the raw
interaction (its custom id names the round's thread), so it needs no state in this process:
it is stored (committed) first, then acknowledged privately. The question is edited in place
to show how many answered; a member who replies in the thread is reminded by direct message.

A study group's weekly digest is an embed with its picture attached (a forum gets it as a new
post); when Discord refuses the file (too large, no Attach Files permission) the embed goes
alone. ``/prep streak`` attaches the member's calendar as a picture, drawn off the event loop,
with the text calendar kept in the embed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import aiohttp
import discord
import yarl
from discord import app_commands
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from prepbot.core.commands import Period
from prepbot.core.events import (
    Invocation,
    Place,
    PrivateAnswer,
    ReplyDeleted,
    ReplyEdited,
    ThreadReply,
)
from prepbot.core.views import (
    DigestCard,
    ErrorView,
    FeedbackView,
    MemberRef,
    Notice,
    QuestionCard,
    Response,
    RevealCard,
    StreakView,
    View,
)
from prepbot.pictures import render_streak_calendar
from prepbot.platforms.discord.embeds import (
    ANSWER_BUTTON,
    ANSWER_EMOJI,
    ANSWER_LABEL,
    DiscordMessage,
    clip,
    digest_footer,
    digest_message,
    digest_thread_name,
    render,
    with_picture,
)
from prepbot.services import Services
from prepbot.services.answers import AnswerOutcome
from prepbot.services.ports import ChannelUnavailable, InFlight
from prepbot.settings import DiscordSettings
from prepbot.store.models import Community, Round, RoundStatus, Subscription

log = logging.getLogger(__name__)

PLATFORM = "discord"
ArchiveMinutes = Literal[60, 1440, 4320, 10080]
T = TypeVar("T")
ON_TIME_REACTION, LATE_REACTION = "✅", "🕓"
STORE_PAUSES = (0.2, 0.5, 1, 2, 4, 8, 15, 30)  # seconds between tries to store an event (~1 min)
THREAD_ALREADY_CREATED = 160004  # "A thread has already been created for this message"
PUBLIC_SUBCOMMANDS = {"leaderboard"}
ADMIN_FOR_OTHERS = {"forget-me", "archive"}  # members' own, with more for admins: always private
ADMIN_SUBCOMMANDS = {
    "subscribe",
    "schedule",
    "status",
    "pause",
    "resume",
    "unsubscribe",
    "post-now",
    "reveal-now",
}
THINKING_IN_PUBLIC = "prep:thinking-in-public"  # Interaction.extras: a public "thinking…" shows
ANSWER_MODAL = ANSWER_BUTTON + ":"  # + the round's thread id: the custom_id of the answer modal
ANSWER_MODAL_TITLE = "Your answer (private until the reveal)"
ANSWER_INPUT = "text"  # custom_id of the modal's text input
MAX_ANSWER = 4000  # characters: Discord's most for a text input
PREFILL_WITHIN = 1.5  # seconds the stored answer may take to load before the modal opens empty
STORE_WITHIN = 2.5  # seconds a submitted answer may take to store before the reply is deferred
THREAD_ARCHIVED = 50083  # "Thread is archived"
FILE_REFUSED = {40005, 50013}  # "Request entity too large"; "Missing Permissions" (Attach Files)
STREAK_PICTURE = "streak-calendar.png"  # the file name of /prep streak's calendar picture
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    read_message_history=True,
    add_reactions=True,  # ✅ on an answer once it is stored, 🕓 on a late one
    attach_files=True,  # the weekly digest's picture
)


def invite_url(application_id: int) -> str:
    """Return the OAuth2 URL that installs the bot with exactly the permissions it needs."""
    return discord.utils.oauth_url(
        application_id, permissions=BOT_PERMISSIONS, scopes=("bot", "applications.commands")
    )


def point_at(settings: DiscordSettings) -> None:
    """Send discord.py's REST and gateway traffic to the configured base URLs."""
    discord.http.Route.BASE = settings.api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


LOOKUP_LIMIT = 100  # messages a repair looks through for the bot's own post


def nonce(*parts: object) -> str:
    """Return a message nonce (at most 25 characters) that is the same for the same parts.

    Sent with ``enforce_nonce``, Discord answers a repeated send from the last few minutes with
    the message it already made: a post retried after a timeout or a failed second step is not
    doubled.
    """
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:25]


def edited_reply(
    data: Mapping[str, Any], place: Place, thread_id: int, message_id: int
) -> ReplyEdited | None:
    """Translate a raw MESSAGE_UPDATE payload: a member's edited reply, or None.

    Only ``data`` comes from the gateway unchecked by discord.py (the ids are parsed by it), so
    every field is checked for its type: a payload with a field missing or of the wrong type is
    not an edit, never an error.
    """
    author = data.get("author")
    if not isinstance(author, Mapping) or author.get("bot") or "content" not in data:
        return None
    author_id = author.get("id")
    if isinstance(author_id, bool) or not isinstance(author_id, str | int) or author_id == "":
        return None
    member = data.get("member")
    names = (
        member.get("nick") if isinstance(member, Mapping) else None,
        author.get("global_name"),
        author.get("username"),
    )
    name = next((n for n in names if isinstance(n, str) and n), str(author_id))
    content = data.get("content")
    at = (
        _timestamp(data.get("edited_timestamp"))
        or _timestamp(data.get("timestamp"))
        or discord.utils.utcnow()
    )
    return ReplyEdited(
        place,
        str(thread_id),
        str(message_id),
        MemberRef(str(author_id), name),
        content if isinstance(content, str) else "",
        at,
    )


def bound_requests(client: discord.Client, seconds: float) -> None:
    """Give each of the client's REST exchanges a deadline, so a hung call cannot hold on.

    discord.py leaves aiohttp's five-minute default; one call Discord never answers would hold
    a scheduler tick (and a shutdown waiting for it) that long. The deadline is per HTTP
    exchange: discord.py's own waits for rate limits come between exchanges and still run.
    A call that times out raises TimeoutError; a post is repaired by looking for it first.
    """
    request = client.http.request
    deadline = aiohttp.ClientTimeout(total=seconds)

    async def bounded(route: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", deadline)
        return await request(route, **kwargs)

    client.http.request = bounded  # type: ignore[method-assign]


def file_refused(error: discord.HTTPException) -> bool:
    """Say whether Discord refused a message for its attachment (too large, no Attach Files)."""
    return error.status == 413 or error.code in FILE_REFUSED


def _timestamp(value: Any) -> datetime | None:
    """Read an ISO 8601 timestamp from a payload (UTC when it names no zone); None if not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class BadOption(app_commands.AppCommandError):
    """An option value a command cannot take; ``str()`` is the message for the member."""


class ClosedChoice(app_commands.Transformer):
    """A string option with a fixed set of values, which Discord shows by their labels."""

    def __init__(self, noun: str, labels: Mapping[StrEnum, str]) -> None:
        super().__init__()
        self.noun = noun
        self.labels = dict(labels)

    @property
    def type(self) -> discord.AppCommandOptionType:
        """Say that Discord sends the value as a string."""
        return discord.AppCommandOptionType.string

    @property
    def choices(self) -> list[app_commands.Choice[int | float | str]]:
        """Return the choices Discord offers: a human label, the machine value."""
        return [
            app_commands.Choice[int | float | str](name=label, value=v.value)
            for v, label in self.labels.items()
        ]

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> StrEnum:
        """Return the chosen value, or refuse one that is not among the choices."""
        for choice in self.labels:
            if choice.value == value:
                return choice
        *others, last = (f"{v.value}" for v in self.labels)
        raise BadOption(f"{shown(value)} is not a {self.noun}: use {', '.join(others)} or {last}.")


PERIOD = ClosedChoice(
    "period", {Period.WEEK: "this week", Period.MONTH: "this month", Period.ALL: "all time"}
)


def shown(value: Any) -> str:
    """Quote what a member typed, short and without breaking the code span."""
    return f"`{clip(str(value).replace('`', chr(39)), 40)}`"


def failure_message(interaction: discord.Interaction, error: app_commands.AppCommandError) -> str:
    """Say, in a line, why a slash command could not run and what to do instead."""
    command = interaction.command
    name = f"/{command.qualified_name}" if command is not None else "/prep"
    match error:
        case BadOption():
            return str(error)
        case app_commands.CommandNotFound():
            typed = shown("/" + " ".join([*error.parents, error.name]))
            return f"Unknown command {typed}. Try `/prep help` to see what I can do."
        case app_commands.CommandSignatureMismatch():
            return (
                f"`{name}` has changed since Discord loaded it. Reload Discord "
                "(Ctrl+R, or reopen the app) and try again."
            )
        case app_commands.TransformerError():
            option = _option_with_value(interaction, error.value) or "option"
            value = shown(error.value)
            return f"{value} is not a valid {option} for `{name}`: pick one from the list."
        case _:
            return f"Something went wrong running `{name}`; it has been logged. Try again soon."


def _option_with_value(interaction: discord.Interaction, value: Any) -> str | None:
    """Return the name of the option the member gave ``value`` for, if any."""
    data: Mapping[str, Any] = interaction.data or {}
    options: list[Any] = list(data.get("options") or [])
    while options:
        option = options.pop()
        options.extend(option.get("options") or [])
        if option.get("type") not in (1, 2) and option.get("value") == value:
            return str(option["name"])
    return None


class PrepCommandTree(app_commands.CommandTree[discord.Client]):
    """The /prep command tree; its error handler answers every failed interaction privately."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        """Log the failure once, then tell the member what went wrong, privately."""
        expected = isinstance(
            error,
            BadOption
            | app_commands.CommandNotFound
            | app_commands.CommandSignatureMismatch
            | app_commands.TransformerError,
        )
        command = interaction.command.qualified_name if interaction.command else "?"
        if expected:
            log.info("refused /%s from %s: %s", command, interaction.user.id, error)
        else:
            cause = getattr(error, "original", error)
            log.error(
                "/%s failed for %s",
                command,
                interaction.user.id,
                exc_info=(type(cause), cause, cause.__traceback__),
            )
        try:
            await answer_privately(interaction, failure_message(interaction, error))
        except discord.HTTPException as failure:
            log.warning(
                "could not tell %s why the command failed: %s", interaction.user.id, failure
            )


async def answer_privately(interaction: discord.Interaction, text: str) -> None:
    """Answer an interaction with a private error, whether or not it was deferred."""
    if interaction.type is discord.InteractionType.autocomplete:
        if not interaction.response.is_done():
            await interaction.response.autocomplete([])
        return
    embeds = render(ErrorView(text)).embeds
    if not interaction.response.is_done():
        await interaction.response.send_message(embeds=embeds, ephemeral=True)
        return
    if interaction.extras.pop(THINKING_IN_PUBLIC, False):
        # The first follow-up would inherit the public deferral: clear "thinking…" instead.
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
    await interaction.followup.send(embeds=embeds, ephemeral=True)


Press = Callable[[discord.Interaction], Awaitable[None]]


async def _not_ready(interaction: discord.Interaction) -> None:
    """Answer a press that came before the bot could take answers."""
    await answer_privately(interaction, "Not ready to take answers yet; try again in a moment.")


class AnswerView(discord.ui.View):
    """The Answer button under a private-mode question; one persistent view serves them all."""

    def __init__(self, press: Press = _not_ready) -> None:
        super().__init__(timeout=None)
        self.press = press

    @discord.ui.button(
        label=ANSWER_LABEL,
        emoji=ANSWER_EMOJI,
        style=discord.ButtonStyle.primary,
        custom_id=ANSWER_BUTTON,
    )
    async def answer(
        self, interaction: discord.Interaction, _: discord.ui.Button[AnswerView]
    ) -> None:
        """Open the member's answer modal."""
        await self.press(interaction)


class AnswerModal(discord.ui.Modal):
    """The modal a member writes a private answer in; ``thread_id`` names the round."""

    text: discord.ui.TextInput[AnswerModal] = discord.ui.TextInput(
        label="Your answer",
        style=discord.TextStyle.paragraph,
        custom_id=ANSWER_INPUT,
        placeholder="Hidden from everyone until the reveal. Leave empty to withdraw it.",
        required=False,  # an empty submission withdraws the answer
        max_length=MAX_ANSWER,
    )

    def __init__(self, thread_id: str, stored: str) -> None:
        super().__init__(title=ANSWER_MODAL_TITLE, custom_id=ANSWER_MODAL + thread_id)
        self.text.default = clip(stored, MAX_ANSWER) or None
        # Submissions are handled from the raw interaction (any member, any process, after a
        # restart), so discord.py must not keep this modal waiting for its submission.
        self.stop()


def submitted_text(data: Mapping[str, Any] | None) -> str:
    """Return the answer typed in a submitted answer modal ('' if none): rows or labels."""
    found: list[Any] = list((data or {}).get("components") or [])
    while found:
        component = found.pop(0)
        if not isinstance(component, Mapping):
            continue
        if component.get("custom_id") == ANSWER_INPUT:
            value = component.get("value")
            return value if isinstance(value, str) else ""
        found.extend(component.get("components") or [])
        if isinstance(component.get("component"), Mapping):
            found.append(component["component"])
    return ""


class DiscordPlatform:
    """Post rounds to Discord channels: an embed with a thread, or a forum post."""

    name = PLATFORM

    def __init__(
        self, client: discord.Client, archive_minutes: ArchiveMinutes, press: Press = _not_ready
    ) -> None:
        self.client = client
        self.archive_minutes = archive_minutes
        self.press = press  # what the Answer button does (the runtime opens the answer modal)

    def answer_view(self, message: DiscordMessage) -> discord.ui.View:
        """Return the components a message carries: the Answer button, or none."""
        return AnswerView(self.press) if message.answer_button else discord.utils.MISSING

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        """Post the question and open its thread; return the thread id answers arrive in."""
        message = render(card)
        try:
            channel = await self.channel(int(channel_id))
            name = clip(f"{card.round_date or ''} {card.title}".strip(), 100)
            if isinstance(channel, discord.ForumChannel):
                created = await channel.create_thread(
                    name=name,
                    embeds=message.embeds,
                    view=self.answer_view(message),
                    auto_archive_duration=self.archive_minutes,
                )
                return str(created.thread.id)
            if not isinstance(channel, discord.TextChannel):
                raise ChannelUnavailable(
                    f"Discord: channel {channel_id} is not a text or forum channel"
                )
            posted = await channel.send(
                embeds=message.embeds,
                view=self.answer_view(message),
                nonce=nonce("question", channel_id, card.round_date, card.scenario_id),
            )
            try:
                thread = await posted.create_thread(
                    name=name,
                    auto_archive_duration=self.archive_minutes,
                )
            except discord.HTTPException as error:
                if error.code != THREAD_ALREADY_CREATED:
                    raise
                return str(posted.id)  # a retry: the first try made it; it has the message's id
            return str(thread.id)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None

    async def post_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post the reveal in the round's thread, mentioning who answered."""
        message = render(card)
        try:
            thread = await self.channel(int(thread_id))
            if not isinstance(thread, discord.Thread):
                raise ChannelUnavailable(f"Discord: thread {thread_id} is gone")
            if thread.archived:
                await thread.edit(archived=False)
            sent = await thread.send(
                nonce=nonce("reveal", thread_id),
                content=message.content or None,
                embeds=message.embeds,
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(i) for i in message.mentions], everyone=False, roles=False
                ),
            )
            return str(sent.id)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Send a member their feedback as a direct message; False when their DMs are closed."""
        return await self._direct_message(member, render(feedback), "feedback")

    async def _direct_message(self, member: MemberRef, message: DiscordMessage, what: str) -> bool:
        """Send a member a direct message; False when their DMs are closed (or they are gone)."""
        try:
            user = self.client.get_user(int(member.id)) or await self.client.fetch_user(
                int(member.id)
            )
            dm = user.dm_channel or await user.create_dm()
            await dm.send(embeds=message.embeds)
        except (discord.Forbidden, discord.NotFound) as error:
            log.info("%s for member %s not delivered: %s", what, member.id, error.text or error)
            return False
        return True

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        """Edit a private-mode question in place to show how many answered so far.

        In a text channel the question is the message the thread started from (same id); in
        a forum it is the post's starter message, inside the thread (same id again).
        """
        message = render(card)
        try:
            channel = await self.channel(int(channel_id))
            forum = isinstance(channel, discord.ForumChannel)
            where = self.client.get_partial_messageable(
                int(thread_id) if forum else int(channel_id)
            )
            question = where.get_partial_message(int(thread_id))
            # A group switched back to answering in the thread loses the button (view=None).
            view = self.answer_view(message) if message.answer_button else None
            try:
                await question.edit(embeds=message.embeds, view=view)
            except discord.HTTPException as error:
                if not forum or error.code != THREAD_ARCHIVED:
                    raise
                thread = await self.channel(int(thread_id))
                if isinstance(thread, discord.Thread):
                    await thread.edit(archived=False)
                await question.edit(embeds=message.embeds, view=view)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Tell a member something privately, by direct message; False when their DMs are closed."""
        return await self._direct_message(member, render(Notice(text)), "notice")

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Look for the bot's post of this round since ``since``; open its thread if missing.

        In a text channel: the channel's history, a bot message whose embed has the round's
        title and scenario id. In a forum: the forum's known threads with the round's name.
        """
        me = self.client.user
        if me is None:
            return None
        name = clip(f"{card.round_date or ''} {card.title}".strip(), 100)
        try:
            channel = await self.channel(int(channel_id))
            if isinstance(channel, discord.ForumChannel):
                for thread in channel.threads:
                    if thread.owner_id == me.id and thread.name == name:
                        return str(thread.id)
                return None
            if not isinstance(channel, discord.TextChannel):
                return None
            marker = f"id {card.scenario_id}"
            async for message in channel.history(limit=LOOKUP_LIMIT, after=since):
                if message.author.id != me.id or not message.embeds:
                    continue
                embed = message.embeds[0]
                if embed.title == clip(card.title, 256) and marker in (embed.footer.text or ""):
                    await self._open_thread(message, name)
                    return str(message.id)  # a thread started from a message shares its id
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None
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
        me = self.client.user
        if me is None:
            return None
        title = clip(f"💡 Key insights — {card.title}", 256)
        try:
            thread = await self.channel(int(thread_id))
            if not isinstance(thread, discord.Thread):
                return None
            async for message in thread.history(limit=LOOKUP_LIMIT, after=since):
                if message.author.id == me.id and any(e.title == title for e in message.embeds):
                    return str(message.id)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None
        return None

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        """Post a weekly digest: an embed showing its attached picture; return the message's id.

        In a forum it starts a post of its own (the post's id is its first message's). When
        Discord refuses the file (413 / 40005 too large, 50013 no Attach Files) the embed goes
        alone. Nobody is mentioned. discord.py waits out 429s and retries server errors; a
        text channel's send carries a nonce, so a send retried within minutes is not doubled.
        """
        try:
            channel = await self.channel(int(channel_id))
            if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
                raise ChannelUnavailable(
                    f"Discord: channel {channel_id} is not a text or forum channel"
                )
            if picture is not None:
                try:
                    return await self._send_digest(channel, card, picture)
                except discord.HTTPException as error:
                    if not file_refused(error):
                        raise
                    log.warning(
                        "Discord refused the digest picture in channel %s (%s %s: %s); "
                        "sending the digest without it",
                        channel_id,
                        error.status,
                        error.code,
                        error.text,
                    )
            return await self._send_digest(channel, card, None)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None

    async def _send_digest(
        self,
        channel: discord.TextChannel | discord.ForumChannel,
        card: DigestCard,
        picture: bytes | None,
    ) -> str:
        """Send a digest's embed, with its picture attached when given; return the message id."""
        message = digest_message(card, card.picture_name if picture is not None else None)
        files: list[discord.File] = []
        if picture is not None:
            alt = f"Weekly digest chart, {card.period_start} to {card.period_end}"
            files.append(
                discord.File(io.BytesIO(picture), filename=card.picture_name, description=alt)
            )
        if isinstance(channel, discord.ForumChannel):
            created = await channel.create_thread(
                name=digest_thread_name(card),
                embeds=message.embeds,
                files=files or discord.utils.MISSING,
                allowed_mentions=discord.AllowedMentions.none(),
                auto_archive_duration=self.archive_minutes,
            )
            return str(created.message.id)
        sent = await channel.send(
            embeds=message.embeds,
            files=files or discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions.none(),
            nonce=nonce("digest", channel.id, card.period_end),
        )
        return str(sent.id)

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Look for the bot's post of this digest since ``since``; return its message id.

        In a text channel: the channel's history, a bot message with the picture's file name
        or the digest's footer (which names the week). In a forum: the forum's known posts by
        the bot with the digest's name (a post's id is its first message's).
        """
        me = self.client.user
        if me is None:
            return None
        footer = digest_footer(card)
        try:
            channel = await self.channel(int(channel_id))
            if isinstance(channel, discord.ForumChannel):
                name = digest_thread_name(card)
                for thread in channel.threads:
                    if thread.owner_id == me.id and thread.name == name:
                        return str(thread.id)
                return None
            if not isinstance(channel, discord.TextChannel):
                return None
            async for message in channel.history(limit=LOOKUP_LIMIT, after=since):
                if message.author.id != me.id:
                    continue
                if any(a.filename == card.picture_name for a in message.attachments) or any(
                    e.footer.text == footer for e in message.embeds
                ):
                    return str(message.id)
        except (discord.NotFound, discord.Forbidden) as error:
            raise ChannelUnavailable(f"Discord: {error.status} {error.text or error}") from None
        return None

    async def _open_thread(self, message: discord.Message, name: str) -> None:
        """Start the round's thread on a found question unless it has one."""
        try:
            await message.create_thread(name=name, auto_archive_duration=self.archive_minutes)
        except discord.HTTPException as error:
            if error.code != THREAD_ALREADY_CREATED:
                raise

    async def channel(self, channel_id: int) -> Any:
        """Return a channel or thread from the cache, else from Discord."""
        return self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)


class PrepClient(discord.Client):
    """The discord.py client, its /prep command tree and its event handlers."""

    def __init__(self, runtime: DiscordRuntime) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True
        super().__init__(intents=intents, chunk_guilds_at_startup=False)
        self.runtime = runtime
        self.tree = PrepCommandTree(self)
        self.tree.add_command(build_prep_group(runtime))
        self.ready_once = asyncio.Event()

    async def setup_hook(self) -> None:
        """Listen for Answer buttons on any question, then sync /prep to the guilds, or globally."""
        self.add_view(AnswerView(self.runtime.open_answer))
        guilds = self.runtime.settings.guild_ids
        if guilds:
            for guild_id in guilds:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_ready(self) -> None:
        """Pick up replies made while away, then say we are ready."""
        async with self.runtime.in_flight.track():
            await self.runtime.catch_up_replies()
        self.ready_once.set()

    async def on_resumed(self) -> None:
        """After a resumed session, pick up anything the replay did not bring."""
        async with self.runtime.in_flight.track():
            await self.runtime.catch_up_replies()

    # discord.py runs each event handler as its own task, so a message and its deletion can be
    # handled out of order. Taking the channel's lock before the first await keeps the order
    # in which the gateway delivered them (asyncio locks are first come, first served).

    async def on_message(self, message: discord.Message) -> None:
        """Record a member's message in a round's thread."""
        async with self.runtime.in_flight.track(), self.runtime.lock_for(message.channel.id):
            await self.runtime.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Record an edited reply."""
        async with self.runtime.in_flight.track(), self.runtime.lock_for(payload.channel_id):
            await self.runtime.on_edit(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Withdraw a deleted reply."""
        async with self.runtime.in_flight.track(), self.runtime.lock_for(payload.channel_id):
            await self.runtime.on_delete(payload)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Store a submitted answer modal (slash commands and buttons have their own routes)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: Mapping[str, Any] = interaction.data or {}
        custom_id = str(data.get("custom_id") or "")
        if custom_id.startswith(ANSWER_MODAL):
            async with self.runtime.in_flight.track():
                await self.runtime.submit_answer(interaction, custom_id[len(ANSWER_MODAL) :])


async def stored(what: str, store: Callable[[], Awaitable[T]]) -> T:
    """Store an event, again after a pause while the database fails: Discord sends it once.

    Storing is idempotent (keyed by message id), so a try whose commit was lost is harmless.
    """
    for pause in (*STORE_PAUSES, None):
        try:
            return await store()
        except SQLAlchemyError as error:
            reason = (str(getattr(error, "orig", None) or error).splitlines() or [""])[0]
            if pause is None:
                log.error("gave up storing %s from Discord: %s", what, reason)
                raise
            log.warning("could not store %s from Discord (%s); again in %s s", what, reason, pause)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable: the last try returns or raises")


class DiscordRuntime:
    """One Discord bot connection: client, commands, events and the ChatPlatform."""

    def __init__(self, settings: DiscordSettings, services: Services) -> None:
        self.settings = settings
        self.services = services
        point_at(settings)
        self.client = PrepClient(self)
        bound_requests(self.client, settings.request_timeout_seconds)
        self.platform = DiscordPlatform(
            self.client, settings.thread_archive_minutes, self.open_answer
        )
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self.in_flight = InFlight()

    def lock_for(self, channel_id: int) -> asyncio.Lock:
        """Return the lock that keeps one channel's events in delivery order."""
        if len(self._locks) > 10_000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(channel_id, asyncio.Lock())

    async def start(self, timeout: float = 60) -> None:
        """Log in, connect the gateway in the background and wait until ready."""
        assert self.settings.token is not None
        self.services.ctx.platforms[PLATFORM] = self.platform
        await self.client.login(self.settings.token.get_secret_value())
        self._task = asyncio.create_task(self.client.connect(reconnect=True), name="discord")
        ready = asyncio.create_task(self.client.ready_once.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            failure = self._task.exception() if self._task in done else None
            if failure is not None:
                raise failure
            raise TimeoutError("Discord did not become ready in time")
        log.info("connected to Discord as %s", self.client.user)

    async def connected(self) -> bool:
        """Say whether the gateway session is up."""
        return self.client.is_ready() and not self.client.is_closed() and self.client.ws is not None

    async def stop(self) -> None:
        """Let events under way and pending answer counts finish, then close the connection.

        The REST session closes with the gateway, so anything still editing a post (a private
        group's "🔒 N answers so far") gets its chance first; events that arrive while closing
        are drained after.
        """
        await self.in_flight.drain(timeout=5)
        await self.services.private.drain(timeout=5)
        await self.client.close()
        await self.in_flight.drain()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (TimeoutError, asyncio.CancelledError, Exception) as error:
                log.debug("the Discord connection ended with %r", error)
            self._task = None

    # Answers.

    def _place(self, guild_id: int | None, parent_id: int | None) -> Place | None:
        if guild_id is None or parent_id is None:
            return None
        return Place(PLATFORM, str(guild_id), str(parent_id))

    async def on_message(self, message: discord.Message) -> None:
        """Store a thread message as (part of) an answer."""
        channel = message.channel
        if message.author.bot or not isinstance(channel, discord.Thread):
            return
        place = self._place(message.guild.id if message.guild else None, channel.parent_id)
        if place is None:
            return
        reply = ThreadReply(
            place,
            str(channel.id),
            str(message.id),
            MemberRef(str(message.author.id), message.author.display_name),
            message.content,
            message.created_at,
        )
        outcome = await stored(f"message {message.id}", lambda: self.services.answers.record(reply))
        self._acknowledge(message, outcome)

    def _acknowledge(self, message: discord.Message, outcome: AnswerOutcome) -> None:
        """React to a newly stored answer in the background: ✅ on time, 🕓 late."""
        on_time = outcome.newly_stored
        if on_time is None:
            return
        self.in_flight.spawn(self._react(message, on_time))

    async def _react(self, message: discord.Message, on_time: bool) -> None:
        try:
            await message.add_reaction(ON_TIME_REACTION if on_time else LATE_REACTION)
        except Exception as error:  # the answer is stored; only the reaction is missing
            log.warning("could not react to answer %s: %r", message.id, error)

    async def on_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Store an edited thread message."""
        unplaced = Place(PLATFORM, "", "")
        edit = edited_reply(payload.data, unplaced, payload.channel_id, payload.message_id)
        if edit is None:
            return
        parent = await self._parent_of(payload.channel_id)
        place = self._place(payload.guild_id, parent)
        if place is None:
            return
        placed = replace(edit, place=place)
        what = f"the edit of {payload.message_id}"
        await stored(what, lambda: self.services.answers.edit(placed))

    async def on_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Withdraw a deleted thread message."""
        parent = await self._parent_of(payload.channel_id)
        place = self._place(payload.guild_id, parent)
        if place is None:
            return
        deleted = ReplyDeleted(
            place, str(payload.channel_id), str(payload.message_id), discord.utils.utcnow()
        )
        await stored(
            f"the deletion of {payload.message_id}", lambda: self.services.answers.withdraw(deleted)
        )

    async def _parent_of(self, channel_id: int) -> int | None:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(channel_id)
            except discord.HTTPException:
                return None
        return channel.parent_id if isinstance(channel, discord.Thread) else None

    async def catch_up_replies(self) -> int:
        """Record thread messages of open rounds posted while the bot was away."""
        async with self.services.ctx.db.transaction() as session:
            rounds = (
                await session.execute(
                    select(
                        Community.external_id, Subscription.channel_id, Round.question_message_id
                    )
                    .join(Subscription, Subscription.community_id == Community.id)
                    .join(Round, Round.subscription_id == Subscription.id)
                    .where(Community.platform == PLATFORM, Round.status == RoundStatus.POSTED)
                )
            ).all()
        recorded = 0
        for guild_id, channel_id, thread_id in rounds:
            if thread_id is None:
                continue
            try:
                async with self.lock_for(int(thread_id)):  # in order with live events
                    recorded += await self._catch_up_thread(guild_id, channel_id, thread_id)
            except discord.HTTPException as error:
                log.warning("cannot read thread %s: %s", thread_id, error)
        if recorded:
            log.info("picked up %s replies posted while the bot was away", recorded)
        return recorded

    async def _catch_up_thread(self, guild_id: str, channel_id: str, thread_id: str) -> int:
        """Record the messages of one round's thread; return how many were new."""
        recorded = 0
        thread = await self.platform.channel(int(thread_id))
        if isinstance(thread, discord.Thread):
            async for message in thread.history(limit=None, oldest_first=True):
                if message.author.bot or message.type not in (
                    discord.MessageType.default,
                    discord.MessageType.reply,
                ):
                    continue
                outcome = await self.services.answers.record(
                    ThreadReply(
                        Place(PLATFORM, guild_id, channel_id),
                        thread_id,
                        str(message.id),
                        MemberRef(str(message.author.id), message.author.display_name),
                        message.content,
                        message.created_at,
                    )
                )
                recorded += outcome.status.value in {"recorded", "late"}
        return recorded

    # /prep

    def is_admin(self, interaction: discord.Interaction) -> bool:
        """Say whether the member may run admin commands (Manage Server, or listed)."""
        if interaction.user.id in self.settings.admin_ids:
            return True
        permissions = getattr(interaction.user, "guild_permissions", None)
        return bool(permissions and permissions.manage_guild)

    async def run(
        self, interaction: discord.Interaction, subcommand: str, *words: str | None
    ) -> None:
        """Defer within Discord's 3 seconds, run the command, answer with its views."""
        asks_admin = subcommand in ADMIN_SUBCOMMANDS or subcommand in ADMIN_FOR_OTHERS
        admin = self.is_admin(interaction) if asks_admin else False
        # The first follow-up keeps the deferral's visibility, so decide it now: personal
        # results and refusals stay private; leaderboards and admins' changes are public.
        public = subcommand in PUBLIC_SUBCOMMANDS or (
            subcommand in ADMIN_SUBCOMMANDS and admin and subcommand != "status"
        )
        private = not public
        await interaction.response.defer(ephemeral=private, thinking=True)
        interaction.extras[THINKING_IN_PUBLIC] = public
        text = " ".join([subcommand, *(w for w in words if w)])
        place = self._interaction_place(interaction)
        member = MemberRef(str(interaction.user.id), interaction.user.display_name)
        response = await self.services.commands.handle(
            Invocation(place, member, admin, text, request_id=str(interaction.id))
        )
        await self._answer(interaction, response, private)

    @staticmethod
    def _interaction_place(interaction: discord.Interaction) -> Place:
        """Return the study group's place an interaction came from (a thread's parent channel)."""
        return Place(
            PLATFORM,
            str(interaction.guild_id or "dm"),
            str(getattr(interaction.channel, "parent_id", None) or interaction.channel_id or ""),
            interaction.guild.name if interaction.guild else "",
            getattr(interaction.channel, "name", "") or "",
        )

    # Private answers.

    async def open_answer(self, interaction: discord.Interaction) -> None:
        """Open the answer modal for the pressed question, holding the member's stored answer."""
        async with self.in_flight.track():
            if interaction.message is None:
                await answer_privately(interaction, "That question is gone; nothing to answer.")
                return
            thread_id = str(interaction.message.id)  # the thread shares its question's id
            place = self._interaction_place(interaction)
            stored = ""
            try:
                stored = await asyncio.wait_for(
                    self.services.answers.private_answer(
                        place, thread_id, str(interaction.user.id)
                    ),
                    PREFILL_WITHIN,
                )
            except Exception as error:  # Discord waits 3 s: open it empty rather than late
                log.warning("could not load %s's stored answer: %r", interaction.user.id, error)
            await interaction.response.send_modal(AnswerModal(thread_id, stored))

    async def submit_answer(self, interaction: discord.Interaction, thread_id: str) -> None:
        """Store a submitted answer modal (committed first), then tell the member privately.

        Storing normally takes milliseconds; when it takes longer than Discord's 3 seconds
        allow, the reply is deferred (privately) and sent once the answer is stored.
        """
        answer = PrivateAnswer(
            self._interaction_place(interaction),
            thread_id,
            str(interaction.id),  # the same submission delivered again has the same id
            MemberRef(str(interaction.user.id), interaction.user.display_name),
            submitted_text(interaction.data),
            interaction.created_at,
        )
        storing = asyncio.ensure_future(self.services.commands.answer_privately(answer))
        try:
            done, _ = await asyncio.wait({storing}, timeout=STORE_WITHIN)
            if not done:
                await interaction.response.defer(ephemeral=True, thinking=True)
            response = await storing
            for view in response.views:
                embeds = render(view).embeds
                if interaction.response.is_done():
                    await interaction.followup.send(embeds=embeds, ephemeral=True)
                else:
                    await interaction.response.send_message(embeds=embeds, ephemeral=True)
        except discord.HTTPException as error:  # stored all the same; only the reply is missing
            log.info("could not acknowledge %s's answer: %s", interaction.user.id, error)
        finally:
            if not storing.done():
                await asyncio.wait({storing})

    async def _answer(
        self, interaction: discord.Interaction, response: Response, private: bool
    ) -> None:
        """Send a command's views; a private group's question (``/prep today``) gets Answer.

        A streak with a calendar also gets the calendar as a picture (the text calendar stays
        in the embed, for when the picture cannot be drawn or sent).
        """
        for view in response.views:
            message = render(view)
            picture = await self._picture_of(view)
            ephemeral = private or response.private
            if picture is not None:
                try:
                    await interaction.followup.send(
                        content=message.content or discord.utils.MISSING,
                        embeds=with_picture(message.embeds, STREAK_PICTURE),
                        file=discord.File(io.BytesIO(picture), filename=STREAK_PICTURE),
                        view=self.platform.answer_view(message),
                        ephemeral=ephemeral,
                        allowed_mentions=discord.AllowedMentions.none(),
                    )
                    interaction.extras[THINKING_IN_PUBLIC] = False
                    continue
                except discord.HTTPException as error:
                    if not file_refused(error):
                        raise
                    log.warning("Discord refused the streak picture: %s", error)
            await interaction.followup.send(
                content=message.content or discord.utils.MISSING,
                embeds=message.embeds,
                view=self.platform.answer_view(message),
                ephemeral=ephemeral,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            interaction.extras[THINKING_IN_PUBLIC] = False

    @staticmethod
    async def _picture_of(view: View) -> bytes | None:
        """Draw a streak's calendar as a PNG off the event loop; None without one or on failure."""
        if not isinstance(view, StreakView) or view.today is None:
            return None
        try:
            return await asyncio.to_thread(render_streak_calendar, view)
        except Exception:  # the text calendar is in the embed: the member still sees it
            log.warning("could not draw the streak calendar of %s", view.member.id, exc_info=True)
            return None

    async def topic_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Return up to 25 topics for what the member has typed, best first."""
        return [
            app_commands.Choice(name=clip(f"{t.name} ({t.id})", 100), value=t.id)
            for t in self.services.ctx.catalog.match_topics(current, limit=25)
        ]

    async def topic_list_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Complete the topic being typed after the ones already chosen ("rag calib")."""
        catalog = self.services.ctx.catalog
        words = re.split(r"[\s,]+", current.lower().lstrip())
        chosen: list[str] = []
        while len(words) > 1 and words[0] in catalog.topics:
            chosen.append(words.pop(0))
        choices: list[app_commands.Choice[str]] = []
        typed = " ".join(words)
        if not chosen and "all".startswith(typed):
            everything = f"all: every topic and difficulty ({len(catalog.scenarios)} scenarios)"
            choices.append(app_commands.Choice(name=everything, value="all"))
        counts = Counter(t for s in catalog.scenarios for t in s.topics)
        for topic in catalog.match_topics(typed, limit=25 + len(chosen)):
            value = " ".join([*chosen, topic.id])
            if topic.id not in chosen and len(value) <= 100 and len(choices) < 25:
                label = " + ".join([*chosen, f"{topic.name} ({topic.id}) · {counts[topic.id]}"])
                choices.append(app_commands.Choice(name=clip(label, 100), value=value))
        return choices

    async def scenario_choices(
        self, current: str, guild_id: int | None = None
    ) -> list[app_commands.Choice[str]]:
        """Return up to 25 scenario ids matching what the member has typed.

        A scenario open in the member's server is matched on its question's words only, so
        the words of its insights cannot find it before the reveal.
        """
        catalog = self.services.ctx.catalog
        if current.strip():
            place = Place(PLATFORM, str(guild_id), "") if guild_id is not None else None
            open_here = set(await self.services.queries.open_in_community(place))
            hits = catalog.search(current, limit=25, question_only=open_here)
            scenarios = [hit.scenario for hit in hits]
        else:
            scenarios = catalog.scenarios[:25]
        return [app_commands.Choice(name=clip(s.title, 100), value=s.id) for s in scenarios]


def build_prep_group(runtime: DiscordRuntime) -> app_commands.Group:
    """Return the /prep command group: every subcommand of the shared grammar, typed."""
    prep = app_commands.Group(
        name="prep", description="Daily interview-prep study group: questions, practice, streaks"
    )

    async def topic_auto(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await runtime.topic_choices(current)

    async def topics_auto(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await runtime.topic_list_choices(current)

    async def ids_auto(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await runtime.scenario_choices(current, interaction.guild_id)

    @prep.command(name="help", description="Show every /prep command and how to use it")
    async def help_(interaction: discord.Interaction) -> None:
        await runtime.run(interaction, "help")

    @prep.command(name="today", description="Show this channel's open question of the day")
    async def today(interaction: discord.Interaction) -> None:
        await runtime.run(interaction, "today")

    @prep.command(name="ask", description="Get a private practice question, on a topic if you like")
    @app_commands.describe(topic="Topic to practise, e.g. rag or calibration; empty for any")
    @app_commands.autocomplete(topic=topic_auto)
    async def ask(interaction: discord.Interaction, topic: str | None = None) -> None:
        await runtime.run(interaction, "ask", topic)

    @prep.command(name="search", description="Find scenarios by words, e.g. gradient sync GPUs")
    @app_commands.describe(words="Words to look for in titles, questions and insights")
    async def search(interaction: discord.Interaction, words: str) -> None:
        await runtime.run(interaction, "search", words)

    @prep.command(name="show", description="Show one scenario in full, with its key insights")
    @app_commands.describe(scenario="The scenario's id; type words from its title to find it")
    @app_commands.autocomplete(scenario=ids_auto)
    async def show(interaction: discord.Interaction, scenario: str) -> None:
        await runtime.run(interaction, "show", scenario)

    @prep.command(name="topics", description="List the topics questions can be about")
    async def topics(interaction: discord.Interaction) -> None:
        await runtime.run(interaction, "topics")

    @prep.command(name="streak", description="Show your answer streak, or another member's")
    @app_commands.describe(member="Whose streak to show; leave empty for your own")
    async def streak(
        interaction: discord.Interaction, member: discord.Member | None = None
    ) -> None:
        await runtime.run(interaction, "streak", f"<@{member.id}>" if member else None)

    @prep.command(name="forget-me", description="Erase your answers and stats from this server")
    @app_commands.describe(
        member="Admins: whose data to erase (a member who left); empty for your own",
        confirm="Yes, erase it (without this you see what would go)",
    )
    async def forget_me(
        interaction: discord.Interaction,
        member: discord.Member | None = None,
        confirm: bool = False,
    ) -> None:
        await runtime.run(
            interaction,
            "forget-me",
            f"<@{member.id}>" if member else None,
            "confirm" if confirm else None,
        )

    @prep.command(name="archive", description="Get this study group's web archive link, privately")
    @app_commands.describe(rotate="Admins: make a new link (the old one stops working)")
    async def archive(interaction: discord.Interaction, rotate: bool = False) -> None:
        await runtime.run(interaction, "archive", "rotate" if rotate else None)

    @prep.command(name="hint", description="Get a nudge on the open question, not its answer")
    async def hint(interaction: discord.Interaction) -> None:
        await runtime.run(interaction, "hint")

    @prep.command(name="answer", description="Answer the open question privately, until the reveal")
    @app_commands.describe(
        text="Your answer, hidden from everyone until the reveal publishes it",
        withdraw="Take your private answer back",
    )
    async def answer(
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_ANSWER] | None = None,
        withdraw: bool = False,
    ) -> None:
        await runtime.run(interaction, "answer", "--withdraw" if withdraw else text)

    @prep.command(name="feedback", description="See the key points your recent answer made")
    @app_commands.describe(
        scenario="A scenario id for an older answer; empty for your latest",
        messages="Turn the private feedback after each reveal on or off",
    )
    @app_commands.autocomplete(scenario=ids_auto)
    async def feedback(
        interaction: discord.Interaction,
        scenario: str | None = None,
        messages: Literal["on", "off"] | None = None,
    ) -> None:
        await runtime.run(interaction, "feedback", messages or scenario)

    @prep.command(name="leaderboard", description="Show who answered the most questions on time")
    @app_commands.describe(
        period="Which rounds count: this week, this month or all time",
        community="Rank everyone in this server, not just this study group",
    )
    async def leaderboard(
        interaction: discord.Interaction,
        period: app_commands.Transform[Period, PERIOD] = Period.WEEK,
        community: bool = False,
    ) -> None:
        await runtime.run(
            interaction, "leaderboard", period.value, "community" if community else None
        )

    schedule_help = {
        "time": "When the question is posted, HH:MM in the group's time zone",
        "timezone": "IANA time zone, e.g. Europe/London or America/New_York",
        "days": "Days to post on: mon-fri, daily, or a list like mon,wed,fri",
        "reveal": "When to reveal the insights: a time like 17:00, or a delay like +6h",
        "topics": "Topic ids to draw questions from, separated by spaces; all for every topic",
        "difficulty": "easy, medium or hard; several separated by spaces",
        "answers": "thread: answers in the open; private: hidden until the reveal",
        "digest": "Weekly digest: auto (after the week's last reveal), off, or e.g. fri-17:00",
    }

    def schedule_command(name: str, description: str) -> app_commands.Command[Any, Any, None]:
        async def callback(
            interaction: discord.Interaction,
            time: str | None = None,
            timezone: str | None = None,
            days: str | None = None,
            reveal: str | None = None,
            topics: str | None = None,
            difficulty: str | None = None,
            answers: Literal["thread", "private"] | None = None,
            digest: str | None = None,
        ) -> None:
            revealing = f"reveal={reveal}" if reveal else None
            mode = f"answers={answers}" if answers else None
            weekly = f"digest={digest}" if digest else None
            await runtime.run(
                interaction,
                name,
                time,
                timezone,
                days,
                revealing,
                mode,
                weekly,
                difficulty,
                topics,
            )

        described = app_commands.autocomplete(topics=topics_auto)(
            app_commands.describe(**schedule_help)(callback)
        )
        return app_commands.Command(name=name, description=description, callback=described)

    prep.add_command(
        schedule_command(
            "subscribe", "Make this channel a study group with a daily question (admins)"
        )
    )
    prep.add_command(
        schedule_command("schedule", "Change the time, days, reveal, topics or difficulty (admins)")
    )
    for name, description in (
        ("status", "Show the schedule, next question, any pause and the rotation left (admins)"),
        ("pause", "Stop posting questions here until /prep resume (admins)"),
        ("resume", "Start posting questions here again after a pause (admins)"),
        ("unsubscribe", "End this channel's study group (admins)"),
        ("post-now", "Post today's question here now, without waiting (admins)"),
        ("reveal-now", "Reveal the open question's key insights now (admins)"),
    ):
        prep.add_command(_simple(runtime, name, description))
    return prep


def _simple(
    runtime: DiscordRuntime, name: str, description: str
) -> app_commands.Command[Any, Any, None]:
    async def callback(interaction: discord.Interaction) -> None:
        await runtime.run(interaction, name)

    return app_commands.Command(name=name, description=description, callback=callback)
