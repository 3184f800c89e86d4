"""Slack message events become thread replies, edits and deletions, and nothing else does."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prepbot.core.events import ReplyDeleted, ReplyEdited, ThreadReply
from prepbot.platforms.slack.events import thread_event
from tests.fuzzing import fuzz_cases

PARENT = "1767225600.000100"
REPLY = "1767225601.000200"


def message(**fields: object) -> dict[str, object]:
    return {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": REPLY} | fields


def test_a_reply_in_a_thread_is_an_answer():
    event = thread_event(message(thread_ts=PARENT), "T1", "UBOT")
    assert isinstance(event, ThreadReply)
    assert (event.place.community_id, event.place.channel_id) == ("T1", "C1")
    assert (event.thread_id, event.message_id, event.member.id) == (PARENT, REPLY, "U1")


def test_also_send_to_channel_counts():
    event = thread_event(message(thread_ts=PARENT, subtype="thread_broadcast"), "T1")
    assert isinstance(event, ThreadReply)


def test_channel_messages_parents_bots_and_the_bot_itself_do_not_count():
    assert thread_event(message(), "T1") is None  # not in a thread
    assert thread_event(message(ts=PARENT, thread_ts=PARENT), "T1") is None  # the parent
    assert thread_event(message(thread_ts=PARENT, bot_id="B2"), "T1") is None
    assert thread_event(message(thread_ts=PARENT, subtype="bot_message"), "T1") is None
    assert thread_event(message(thread_ts=PARENT, user="UBOT"), "T1", "UBOT") is None
    assert thread_event(message(thread_ts=PARENT, subtype="channel_join"), "T1") is None
    assert thread_event({"type": "reaction_added"}, "T1") is None
    assert thread_event(message(thread_ts=PARENT, user=None), "T1") is None


def test_an_edit_maps_back_to_the_reply():
    event = thread_event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "hidden": True,
            "ts": "1767225700.000300",
            "message": {
                "type": "message",
                "user": "U1",
                "text": "better answer",
                "ts": REPLY,
                "thread_ts": PARENT,
                "edited": {"user": "U1", "ts": "1767225700.000000"},
            },
            "previous_message": {"type": "message", "user": "U1", "text": "hi", "ts": REPLY},
        },
        "T1",
    )
    assert isinstance(event, ReplyEdited)
    assert (event.message_id, event.text) == (REPLY, "better answer")


def test_a_deletion_maps_back_to_the_reply():
    event = thread_event(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C1",
            "hidden": True,
            "deleted_ts": REPLY,
            "ts": "1767225800.000400",
            "previous_message": {"type": "message", "user": "U1", "ts": REPLY, "thread_ts": PARENT},
        },
        "T1",
    )
    assert isinstance(event, ReplyDeleted)
    assert (event.thread_id, event.message_id) == (PARENT, REPLY)


def test_malformed_events_are_ignored_not_raised():
    for broken in (
        {},
        {"type": "message"},
        message(thread_ts=5),
        {"type": "message", "subtype": "message_changed", "channel": "C1", "message": "x"},
        {"type": "message", "subtype": "message_deleted", "channel": "C1"},
    ):
        assert thread_event(broken, "T1") is None


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from([PARENT, REPLY, "C1", "U1", "message", "message_changed", "message_deleted"]),
    st.lists(st.text(max_size=4), max_size=2),
)
_keys = st.sampled_from(
    ["type", "subtype", "channel", "user", "text", "ts", "thread_ts", "bot_id", "deleted_ts"]
)
_payloads = st.recursive(
    st.dictionaries(_keys, _values, max_size=9),
    lambda inner: st.dictionaries(
        st.sampled_from(["message", "previous_message", "edited"]) | _keys,
        inner | _values,
        max_size=4,
    ),
    max_leaves=20,
)


@pytest.mark.slow(seconds=70)
@settings(max_examples=fuzz_cases(), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads)
def test_any_payload_is_translated_or_ignored_never_raised(payload: dict[str, object]):
    event = thread_event(payload, "T1", "UBOT")
    assert event is None or event.place.channel_id == payload.get("channel")
