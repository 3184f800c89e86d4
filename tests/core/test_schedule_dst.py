"""Post and reveal times across daylight-saving changes, in four time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from prepbot.core.schedule import Schedule, parse_weekdays

DAILY = parse_weekdays("daily")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(
    ("zone", "post_at", "day", "post_utc", "reveal_utc"),
    [
        # New York: EST (-5) until 2026-03-08 02:00, EDT (-4) until 2026-11-01 02:00.
        ("America/New_York", time(9), date(2026, 3, 7), utc(2026, 3, 7, 14), utc(2026, 3, 7, 22)),
        ("America/New_York", time(9), date(2026, 3, 8), utc(2026, 3, 8, 13), utc(2026, 3, 8, 21)),
        (
            "America/New_York",
            time(9),
            date(2026, 10, 31),
            utc(2026, 10, 31, 13),
            utc(2026, 10, 31, 21),
        ),
        (
            "America/New_York",
            time(9),
            date(2026, 11, 1),
            utc(2026, 11, 1, 14),
            utc(2026, 11, 1, 22),
        ),
        # London: GMT until 2026-03-29 01:00 UTC, BST until 2026-10-25 01:00 UTC.
        ("Europe/London", time(9), date(2026, 3, 28), utc(2026, 3, 28, 9), utc(2026, 3, 28, 17)),
        ("Europe/London", time(9), date(2026, 3, 29), utc(2026, 3, 29, 8), utc(2026, 3, 29, 16)),
        ("Europe/London", time(9), date(2026, 10, 25), utc(2026, 10, 25, 9), utc(2026, 10, 25, 17)),
        # Sydney: AEDT (+11) until 2026-04-05 03:00, AEST (+10) until 2026-10-04 02:00.
        ("Australia/Sydney", time(9), date(2026, 4, 4), utc(2026, 4, 3, 22), utc(2026, 4, 4, 6)),
        ("Australia/Sydney", time(9), date(2026, 4, 5), utc(2026, 4, 4, 23), utc(2026, 4, 5, 7)),
        ("Australia/Sydney", time(9), date(2026, 10, 3), utc(2026, 10, 2, 23), utc(2026, 10, 3, 7)),
        ("Australia/Sydney", time(9), date(2026, 10, 4), utc(2026, 10, 3, 22), utc(2026, 10, 4, 6)),
        # Kolkata: +05:30 all year.
        (
            "Asia/Kolkata",
            time(9),
            date(2026, 3, 8),
            utc(2026, 3, 8, 3, 30),
            utc(2026, 3, 8, 11, 30),
        ),
        (
            "Asia/Kolkata",
            time(9),
            date(2026, 11, 1),
            utc(2026, 11, 1, 3, 30),
            utc(2026, 11, 1, 11, 30),
        ),
        # Post times inside the spring-forward gap move forward by the gap's length.
        ("America/New_York", time(2, 30), date(2026, 3, 8), utc(2026, 3, 8, 7, 30), None),
        ("Europe/London", time(1, 30), date(2026, 3, 29), utc(2026, 3, 29, 1, 30), None),
        ("Australia/Sydney", time(2, 30), date(2026, 10, 4), utc(2026, 10, 3, 16, 30), None),
        # Post times inside the repeated autumn hour are the first of the two.
        ("America/New_York", time(1, 30), date(2026, 11, 1), utc(2026, 11, 1, 5, 30), None),
        ("Europe/London", time(1, 30), date(2026, 10, 25), utc(2026, 10, 25, 0, 30), None),
        ("Australia/Sydney", time(2, 30), date(2026, 4, 5), utc(2026, 4, 4, 15, 30), None),
    ],
)
def test_post_and_reveal_times(
    zone: str, post_at: time, day: date, post_utc: datetime, reveal_utc: datetime | None
):
    schedule = Schedule(post_at=post_at, timezone=zone, weekdays=DAILY, reveal_at=time(17))
    assert schedule.post_time(day) == post_utc
    if reveal_utc is not None:
        assert schedule.reveal_time(day) == reveal_utc
        assert schedule.reveal_due(day, post_utc) == reveal_utc


@pytest.mark.parametrize(
    ("zone", "post_at", "moment", "expected_day", "expected_post"),
    [
        # Friday after the post: next is Monday, already on summer time.
        ("America/New_York", time(9), utc(2026, 3, 6, 15), date(2026, 3, 9), utc(2026, 3, 9, 13)),
        ("Europe/London", time(9), utc(2026, 10, 23, 9), date(2026, 10, 26), utc(2026, 10, 26, 9)),
        ("Australia/Sydney", time(9), utc(2026, 4, 2, 23), date(2026, 4, 6), utc(2026, 4, 5, 23)),
        ("Asia/Kolkata", time(9), utc(2026, 3, 6, 4), date(2026, 3, 9), utc(2026, 3, 9, 3, 30)),
        # Just after the first 01:30 of the repeated hour: the second 01:30 is not a post.
        (
            "America/New_York",
            time(1, 30),
            utc(2026, 10, 30, 5, 31),
            date(2026, 11, 2),
            utc(2026, 11, 2, 6, 30),
        ),
    ],
)
def test_the_next_post_after_a_moment(
    zone: str, post_at: time, moment: datetime, expected_day: date, expected_post: datetime
):
    schedule = Schedule(post_at=post_at, timezone=zone, weekdays=parse_weekdays("mon-fri"))
    assert schedule.next_post_after(moment) == (expected_day, expected_post)


def test_the_repeated_hour_is_posted_once():
    schedule = Schedule(post_at=time(1, 30), timezone="America/New_York", weekdays=DAILY)
    first = utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    second = utc(2026, 11, 1, 6, 30)  # 01:30 EST, the same wall time again
    assert schedule.last_post_at_or_before(second) == (date(2026, 11, 1), first)
    assert schedule.next_post_after(first) == (date(2026, 11, 2), utc(2026, 11, 2, 6, 30))


def test_a_delayed_reveal_follows_a_late_post_but_never_passes_the_next_post():
    schedule = Schedule(
        post_at=time(9), weekdays=DAILY, reveal_at=None, reveal_after=timedelta(hours=6)
    )
    day = date(2026, 5, 4)
    assert schedule.reveal_due(day, utc(2026, 5, 4, 9)) == utc(2026, 5, 4, 15)
    assert schedule.reveal_due(day, utc(2026, 5, 4, 10)) == utc(2026, 5, 4, 16)
    assert schedule.reveal_due(day, utc(2026, 5, 5, 7)) == utc(2026, 5, 5, 9)
    fixed = Schedule(post_at=time(9), weekdays=DAILY, reveal_at=time(17))
    assert fixed.reveal_due(day, utc(2026, 5, 4, 10)) == utc(2026, 5, 4, 17)
