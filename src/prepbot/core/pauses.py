"""Why a study group is paused, in words an admin can act on: the cause, the fix, the kind.

A group pauses when an admin says so (``ADMIN_PAUSE`` is the reason stored then) or when its
platform refuses the channel: the adapters raise ``ChannelUnavailable(reason)`` with reasons
like ``"Slack: is_archived (the channel is archived)"`` or ``"Discord: 403 Missing
Permissions"``, and that text is stored as the pause reason. ``explain_pause`` reads such a
reason back (tolerant of wording it does not know) into what happened and what to do. Pure;
imports no database and no chat platform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ADMIN_PAUSE = "paused by an admin"
RESUME = "/prep resume"


class PauseKind(StrEnum):
    """Who paused a study group: an admin, or the platform refusing its channel."""

    ADMIN = "admin"
    PLATFORM = "platform"


@dataclass(frozen=True)
class PauseExplanation:
    """What paused a group, in words (``cause``), and what to do before resuming (``fix``).

    ``fix`` is None when nothing needs fixing first (an admin's pause). ``resumable`` is False
    when resuming cannot help (the channel was deleted): the fix then says what to do instead.
    ``detail`` is the platform's own word for it (``Slack: is_archived``), for support.
    """

    kind: PauseKind
    cause: str
    fix: str | None
    detail: str | None = None
    resumable: bool = True

    def next_step(self) -> str:
        """Return what the admin does next, as one sentence without a full stop."""
        if not self.resumable:
            return f"To go on: {self.fix}" if self.fix else "Start a new study group elsewhere"
        if self.fix is None:
            return f"Run {RESUME} to start posting again"
        return f"To fix it: {self.fix}, then run {RESUME}"


INVITE = "invite the bot into the channel (type /invite and the bot's name in it)"
SLACK_CAUSES: dict[str, tuple[str, str, bool]] = {
    "channel_not_found": (
        "Slack cannot find the channel: it was deleted, or it is private and the bot is not in it",
        INVITE + "; if it was deleted, run /prep subscribe in another channel",
        True,
    ),
    "is_archived": ("the channel was archived", "unarchive the channel", True),
    "not_in_channel": (
        "the bot was removed from the channel",
        "invite the bot back into the channel (type /invite and the bot's name in it)",
        True,
    ),
    "restricted_action": (
        "the workspace's settings do not let the bot post in the channel",
        "ask a workspace admin to allow the app to post there",
        True,
    ),
    "team_access_not_granted": (
        "the app no longer has access to this workspace",
        "reinstall the app to the workspace",
        True,
    ),
}
DISCORD_PERMISSIONS = (
    "give the bot's role View Channel, Send Messages, Send Messages in Threads, "
    "Create Public Threads, Embed Links and Read Message History in the channel "
    "(Edit Channel → Permissions)"
)
SLACK_CODE = re.compile(r"^\s*slack\W+(?P<code>[a-z_]+)", re.IGNORECASE)


def explain_pause(reason: str | None) -> PauseExplanation:
    """Return why a group with this stored pause reason is paused, and what to do about it."""
    if reason is None or reason.strip() in ("", ADMIN_PAUSE):
        return PauseExplanation(PauseKind.ADMIN, "an admin paused it", None)
    text = reason.strip()
    if text.lower().startswith("slack"):
        return _slack(text)
    if text.lower().startswith("discord"):
        return _discord(text)
    return PauseExplanation(
        PauseKind.PLATFORM,
        "the platform refused to post in the channel",
        "check that the channel exists and the bot may post in it",
        text,
    )


def _slack(text: str) -> PauseExplanation:
    match = SLACK_CODE.match(text)
    code = match["code"].lower() if match else ""
    detail = f"Slack: {code}" if code else text
    if code in SLACK_CAUSES:
        cause, fix, resumable = SLACK_CAUSES[code]
        return PauseExplanation(PauseKind.PLATFORM, cause, fix, detail, resumable)
    return PauseExplanation(
        PauseKind.PLATFORM,
        "Slack refused to post in the channel",
        "check that the channel exists and that the bot is in it",
        detail,
    )


def _discord(text: str) -> PauseExplanation:
    lowered = text.lower()
    status = re.search(r"\b(40[34])\b", text)
    detail = text if len(text) <= 120 else text[:119] + "…"
    if "thread" in lowered and "gone" in lowered:
        return PauseExplanation(
            PauseKind.PLATFORM,
            "the thread of a question was deleted",
            "check that the bot can still post in the channel",
            detail,
        )
    if "not a text or forum channel" in lowered:
        return PauseExplanation(
            PauseKind.PLATFORM,
            "the channel is not a text or forum channel",
            "run /prep subscribe in a text or forum channel",
            detail,
            resumable=False,
        )
    if "unknown channel" in lowered or "10003" in text or (status and status[1] == "404"):
        return PauseExplanation(
            PauseKind.PLATFORM,
            "the channel was deleted",
            "run /prep subscribe in another channel (this one cannot come back)",
            detail,
            resumable=False,
        )
    if "missing permissions" in lowered or "50013" in text:
        return PauseExplanation(
            PauseKind.PLATFORM,
            "the bot lacks permission to post in the channel",
            DISCORD_PERMISSIONS,
            detail,
        )
    if "missing access" in lowered or "50001" in text or (status and status[1] == "403"):
        return PauseExplanation(
            PauseKind.PLATFORM,
            "the bot cannot see the channel (no access)",
            DISCORD_PERMISSIONS + ", or add the bot to the private channel",
            detail,
        )
    return PauseExplanation(
        PauseKind.PLATFORM,
        "Discord refused to post in the channel",
        DISCORD_PERMISSIONS,
        detail,
    )


def pause_kind(reason: str | None) -> PauseKind:
    """Return who paused a group with this stored reason."""
    return explain_pause(reason).kind
