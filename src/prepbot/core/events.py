"""Neutral inbound events: what a platform tells the services, in the product's words.

A platform adapter turns its own payloads into these; services never see Slack or Discord
types. Plain frozen data; imports no database and no chat platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prepbot.core.views import MemberRef


@dataclass(frozen=True)
class Place:
    """A channel in a community on a platform."""

    platform: str
    community_id: str
    channel_id: str
    community_name: str = ""
    channel_name: str = ""


@dataclass(frozen=True)
class _ThreadMessage:
    """A member's message in a thread, as it reads now."""

    place: Place
    thread_id: str
    message_id: str
    member: MemberRef
    text: str
    at: datetime
    is_bot: bool = False


@dataclass(frozen=True)
class ThreadReply(_ThreadMessage):
    """A new message in a thread."""


@dataclass(frozen=True)
class ReplyEdited(_ThreadMessage):
    """A message in a thread was edited."""


@dataclass(frozen=True)
class ReplyDeleted:
    """A message in a thread was deleted."""

    place: Place
    thread_id: str
    message_id: str
    at: datetime


@dataclass(frozen=True)
class Invocation:
    """A member typed /prep with some text in a channel."""

    place: Place
    member: MemberRef
    is_admin: bool
    text: str
    request_id: str = ""
    """The platform's id of this invocation (Slack's trigger_id, Discord's interaction id)."""


@dataclass(frozen=True)
class PrivateAnswer:
    """A member's private answer (or its withdrawal) from a modal, ``/prep answer`` or the console.

    ``thread_id`` names the round's question message (the one whose Answer button was pressed);
    None means the channel's open round. ``submission_id`` is unique per submission on its
    platform (Slack's trigger_id, Discord's interaction id): the same submission delivered
    twice is stored once, and an older one replayed after an edit never brings it back. An
    empty ``text`` withdraws the answer.
    """

    place: Place
    thread_id: str | None
    submission_id: str
    member: MemberRef
    text: str
    at: datetime
