"""Slack message events → neutral thread events: replies, edits and deletions in threads.

Only replies inside a thread count (a thread's parent, channel messages and other bots'
messages do not); "also send to channel" replies (``thread_broadcast``) count like any reply.
Pure translation of Slack's JSON: imports neither slack_bolt nor slack_sdk, no database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prepbot.core.events import Place, ReplyDeleted, ReplyEdited, ThreadReply
from prepbot.core.views import MemberRef

PLATFORM = "slack"
REPLY_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}

SlackThreadEvent = ThreadReply | ReplyEdited | ReplyDeleted


def slack_time(ts: str) -> datetime:
    """Turn a Slack message timestamp ('1700000000.000100') into an aware datetime."""
    return datetime.fromtimestamp(float(ts), tz=UTC)


def thread_event(
    event: dict[str, Any], team_id: str, bot_user_id: str | None = None
) -> SlackThreadEvent | None:
    """Translate one Slack ``message`` event, or return None if it is not a member's reply."""
    if event.get("type") != "message" or not isinstance(event.get("channel"), str):
        return None
    place = Place(PLATFORM, team_id, event["channel"])
    subtype = event.get("subtype")
    if subtype is not None and not isinstance(subtype, str):
        return None
    if subtype == "message_changed":
        return _edited(event.get("message"), place, bot_user_id)
    if subtype == "message_deleted":
        previous = event.get("previous_message") or {}
        thread_ts, deleted = previous.get("thread_ts"), event.get("deleted_ts")
        if not _is_reply(deleted, thread_ts) or _from_bot(previous, bot_user_id):
            return None
        return ReplyDeleted(place, str(thread_ts), str(deleted), slack_time(str(deleted)))
    if subtype not in REPLY_SUBTYPES or _from_bot(event, bot_user_id):
        return None
    ts, thread_ts, user = event.get("ts"), event.get("thread_ts"), event.get("user")
    if not _is_reply(ts, thread_ts) or not isinstance(user, str):
        return None
    return ThreadReply(
        place,
        str(thread_ts),
        str(ts),
        MemberRef(user, user),
        _text(event),
        slack_time(str(ts)),
    )


def _edited(message: Any, place: Place, bot_user_id: str | None) -> ReplyEdited | None:
    if not isinstance(message, dict) or _from_bot(message, bot_user_id):
        return None
    ts, thread_ts, user = message.get("ts"), message.get("thread_ts"), message.get("user")
    if not _is_reply(ts, thread_ts) or not isinstance(user, str):
        return None
    edited = (message.get("edited") or {}).get("ts") or ts
    return ReplyEdited(
        place,
        str(thread_ts),
        str(ts),
        MemberRef(user, user),
        _text(message),
        slack_time(str(edited)),
    )


def _is_reply(ts: Any, thread_ts: Any) -> bool:
    """Say whether a message with these timestamps is a reply inside a thread."""
    return isinstance(ts, str) and isinstance(thread_ts, str) and ts != thread_ts


def _from_bot(message: dict[str, Any], bot_user_id: str | None) -> bool:
    return bool(
        message.get("bot_id")
        or message.get("subtype") == "bot_message"
        or message.get("bot_profile")
        or (bot_user_id is not None and message.get("user") == bot_user_id)
    )


def _text(message: dict[str, Any]) -> str:
    text = message.get("text")
    return text if isinstance(text, str) else ""
