"""The /prep grammar: every subcommand parses, and any input is a command or a usage line."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prepbot.core.commands import (
    USAGE,
    Ask,
    CommandError,
    Help,
    Leaderboard,
    Period,
    PostNow,
    Reschedule,
    RevealNow,
    ScheduleChange,
    Search,
    Show,
    Streak,
    Subscribe,
    is_admin_command,
    parse_prep,
)
from tests.fuzzing import fuzz_cases


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Help()),
        ("HELP", Help()),
        ("ask", Ask()),
        ("ask LLM", Ask(topic="llm")),
        ("search  ring   all-reduce ", Search(words="ring all-reduce")),
        ("show google-gradient-sync-1000-gpus", Show("google-gradient-sync-1000-gpus")),
        ("streak", Streak()),
        ("streak @bob", Streak(member="bob")),
        ("streak <@U024BE7LH>", Streak(member="U024BE7LH")),
        ("streak <@!80351110224678912>", Streak(member="80351110224678912")),
        ("leaderboard", Leaderboard()),
        ("leaderboard month", Leaderboard(period=Period.MONTH)),
        ("leaderboard community all", Leaderboard(period=Period.ALL, community=True)),
        ("post-now", PostNow()),
        ("reveal-now", RevealNow()),
    ],
)
def test_commands_parse(text: str, command: object):
    assert parse_prep(text) == command


def test_subscribe_takes_its_words_in_any_order():
    command = parse_prep("subscribe rag hard reveal=16:30 Asia/Kolkata 07:45 mon,wed,fri llm")
    assert command == Subscribe(
        ScheduleChange(
            post_at=time(7, 45),
            timezone="Asia/Kolkata",
            weekdays=frozenset({0, 2, 4}),
            reveal_at=time(16, 30),
            topics=("rag", "llm"),
            difficulties=("hard",),
        )
    )
    assert parse_prep("schedule reveal=+1h30m").change.reveal_after == timedelta(minutes=90)  # type: ignore[union-attr]
    assert parse_prep("subscribe") == Subscribe(ScheduleChange())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leaderbord", "Did you mean `/prep leaderboard"),
        ("show", "Usage: `/prep show <id>`"),
        ("show a b", "Usage: `/prep show <id>`"),
        ("search", "what should I look for?"),
        ("leaderboard yearly", "`yearly` is not a period"),
        ("leaderboard week month", "`month` is not a period"),
        ("streak bob", "name a member as @name"),
        ("pause now", "it takes no arguments"),
        ("subscribe 9:75", "'9:75' is not a time"),
        ("subscribe Moon/Base", "'Moon/Base' is not an IANA time zone"),
        ("subscribe 08:00 09:00", "post at given twice"),
        ("subscribe reveal=tomorrow", "'tomorrow' is not a time"),
        ("subscribe reveal=+30h", "between 1 minute and 23 hours"),
        ("subscribe reveal=+1h reveal=17:00", "not both"),
        ("schedule", "say what to change"),
        ("subscribe <script>", "is not a time, zone, day or topic"),
    ],
)
def test_bad_input_gets_a_usage_message(text: str, message: str):
    with pytest.raises(CommandError, match=None) as caught:
        parse_prep(text)
    assert message in str(caught.value)


def test_admin_commands_are_marked():
    assert is_admin_command(parse_prep("post-now"))
    assert is_admin_command(parse_prep("schedule 10:00"))
    assert not is_admin_command(parse_prep("leaderboard"))
    assert isinstance(parse_prep("schedule 10:00"), Reschedule)


@pytest.fixture(scope="module")
def zone_list_read_once() -> Iterator[None]:
    """Read the list of time zones once: an unknown zone's suggestions list them all (~20 ms)."""
    import zoneinfo

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            "prepbot.core.schedule.available_timezones",
            functools.cache(zoneinfo.available_timezones),
        )
        yield


@pytest.mark.usefixtures("zone_list_read_once")
@settings(max_examples=fuzz_cases(), deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(
            st.sampled_from(
                [*USAGE, "@x", "12:00", "25:99", "UTC", "a/b", "mon-fri", "reveal=", "+"]
            )
            | st.text(max_size=8),
            max_size=6,
        ).map(" ".join),
    )
)
@pytest.mark.slow(seconds=35)
def test_any_input_is_a_command_or_a_usage_message(text: str):
    message = None
    try:
        parse_prep(text)
    except CommandError as error:
        message = str(error)
    if message is None:
        return
    # Clear: short, one line of help, and it names the problem: the word at fault or the
    # usage of the subcommand.
    assert message.strip()
    assert "Traceback" not in message
    assert len(message) <= 400, message
    words = [w.strip("`'\"") for w in text.split()]
    assert "/prep" in message or any(w and w in message for w in words), (text, message)
