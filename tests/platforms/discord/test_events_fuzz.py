"""Discord MESSAGE_UPDATE payloads become edited replies, and malformed ones are ignored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prepbot.core.events import Place, ReplyEdited
from prepbot.platforms.discord.adapter import edited_reply
from tests.fuzzing import fuzz_cases

PLACE = Place("discord", "100", "2000")
THREAD, MESSAGE = 3000, 4000


def update(**fields: Any) -> dict[str, Any]:
    """Return a MESSAGE_UPDATE payload as the gateway sends it for a member's edit."""
    payload: dict[str, Any] = {
        "id": str(MESSAGE),
        "channel_id": str(THREAD),
        "guild_id": "100",
        "author": {"id": "502", "username": "alice", "global_name": "Alice", "bot": False},
        "member": {"nick": "ali", "roles": []},
        "content": "a better answer",
        "timestamp": "2026-03-02T09:05:00.000000+00:00",
        "edited_timestamp": "2026-03-02T09:10:00.000000+00:00",
    }
    for key, value in fields.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def test_a_members_edit_is_translated():
    edit = edited_reply(update(), PLACE, THREAD, MESSAGE)
    assert isinstance(edit, ReplyEdited)
    assert (edit.thread_id, edit.message_id, edit.text) == (
        str(THREAD),
        str(MESSAGE),
        "a better answer",
    )
    assert (edit.member.id, edit.member.name) == ("502", "ali")
    assert edit.at == datetime(2026, 3, 2, 9, 10, tzinfo=UTC)


def test_names_and_times_fall_back():
    edit = edited_reply(
        update(member=None, edited_timestamp="not a time", timestamp="2026-03-02T09:05:00"),
        PLACE,
        THREAD,
        MESSAGE,
    )
    assert edit is not None
    assert edit.member.name == "Alice"
    assert edit.at == datetime(2026, 3, 2, 9, 5, tzinfo=UTC)  # no zone: UTC, as Discord means


def test_bots_embed_only_updates_and_broken_authors_are_not_edits():
    assert edited_reply(update(author={"id": "9", "bot": True}), PLACE, THREAD, MESSAGE) is None
    assert edited_reply(update(content=None), PLACE, THREAD, MESSAGE) is None  # embeds unfurled
    assert edited_reply(update(author="502"), PLACE, THREAD, MESSAGE) is None
    assert edited_reply(update(author={"username": "x"}), PLACE, THREAD, MESSAGE) is None
    assert edited_reply(update(author={"id": True}), PLACE, THREAD, MESSAGE) is None


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["502", "2026-03-02T09:10:00+00:00", "2026-13-45T99:99", "", "alice"]),
    st.lists(st.text(max_size=4), max_size=2),
)
_keys = st.sampled_from(
    [
        "id",
        "channel_id",
        "guild_id",
        "author",
        "member",
        "content",
        "timestamp",
        "edited_timestamp",
        "embeds",
        "bot",
        "username",
        "global_name",
        "nick",
    ]
)
_payloads = st.recursive(
    st.dictionaries(_keys, _values, max_size=9),
    lambda inner: st.dictionaries(_keys, inner | _values, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow(seconds=70)
@settings(max_examples=fuzz_cases(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads | _payloads.map(lambda junk: update() | junk))
def test_any_update_payload_is_an_edit_or_ignored_never_raised(payload: dict[str, Any]):
    edit = edited_reply(payload, PLACE, THREAD, MESSAGE)
    if edit is None:
        return
    author = payload["author"]
    assert isinstance(author, dict)
    assert not author.get("bot")
    assert edit.member.id == str(author["id"])
    assert edit.member.id
    assert isinstance(edit.member.name, str)
    assert edit.member.name
    assert isinstance(edit.text, str)
    assert edit.at.tzinfo is not None
