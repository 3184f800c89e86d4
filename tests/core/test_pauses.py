"""A pause reason reads back as a cause and a fix an admin can act on, whatever wrote it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prepbot.core.pauses import ADMIN_PAUSE, PauseKind, explain_pause


@pytest.mark.parametrize(
    ("reason", "cause", "fix"),
    [
        # What the Slack adapter stores: "Slack: <code> (<its own words>)".
        (
            "Slack: is_archived (the channel is archived)",
            "the channel was archived",
            "unarchive the channel",
        ),
        (
            "Slack: not_in_channel (the bot was removed from the channel)",
            "the bot was removed from the channel",
            "invite the bot back",
        ),
        ("Slack: channel_not_found (…)", "it was deleted", "/invite"),
        ("Slack: restricted_action (…)", "do not let the bot post", "workspace admin"),
        ("Slack: team_access_not_granted (…)", "no longer has access", "reinstall"),
        # What the Discord adapter stores: "Discord: <status> <text>".
        (
            "Discord: 403 Missing Permissions",
            "the bot lacks permission to post in the channel",
            "Send Messages",
        ),
        ("Discord: 403 Forbidden (error code: 50013): Missing Permissions", "lacks", "Embed"),
        ("Discord: 403 Missing Access", "cannot see the channel", "View Channel"),
        ("Discord: 404 Unknown Channel", "the channel was deleted", "another channel"),
        ("Discord: thread 123 is gone", "thread of a question was deleted", "post"),
    ],
)
def test_platform_reasons_read_as_a_cause_and_a_fix(reason: str, cause: str, fix: str):
    explained = explain_pause(reason)
    assert explained.kind is PauseKind.PLATFORM
    assert cause in explained.cause
    assert explained.fix is not None
    assert fix in explained.fix


def test_a_resumable_pause_ends_with_resume_and_a_deleted_channel_does_not():
    archived = explain_pause("Slack: is_archived (the channel is archived)")
    assert archived.next_step() == "To fix it: unarchive the channel, then run /prep resume"
    deleted = explain_pause("Discord: 404 Unknown Channel")
    assert not deleted.resumable
    assert "/prep resume" not in deleted.next_step()
    assert "/prep subscribe" in deleted.next_step()


@pytest.mark.parametrize("reason", [ADMIN_PAUSE, None, ""])
def test_an_admin_pause_needs_only_a_resume(reason: str | None):
    explained = explain_pause(reason)
    assert explained.kind is PauseKind.ADMIN
    assert explained.next_step() == "Run /prep resume to start posting again"


def test_an_unknown_slack_code_is_named_not_hidden():
    explained = explain_pause("Slack: ekm_access_denied (…)")
    assert explained.kind is PauseKind.PLATFORM
    assert explained.cause == "Slack refused to post in the channel"
    assert explained.detail == "Slack: ekm_access_denied"


@given(st.text(max_size=300))
def test_any_stored_reason_is_explained_without_an_error(reason: str):
    explained = explain_pause(reason)
    assert explained.cause
    assert explained.next_step()
