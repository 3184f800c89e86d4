"""Schedule maths: scheduled days, local post and reveal times, DST gaps and folds."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from prepbot.core.schedule import (
    Schedule,
    ScheduleError,
    parse_delay,
    parse_timezone,
    parse_weekdays,
)


def test_the_next_day_skips_days_without_a_round():
    weekdays = Schedule()
    friday = date(2026, 11, 27)
    assert weekdays.next_day(friday) == date(2026, 11, 30)
    assert Schedule(weekdays=parse_weekdays("daily")).next_day(friday) == date(2026, 11, 28)


def test_post_and_reveal_are_local_times():
    london = Schedule(post_at=time(9), timezone="Europe/London", reveal_at=time(17))
    assert london.post_time(date(2026, 7, 1)) == datetime(2026, 7, 1, 8, tzinfo=UTC)
    assert london.reveal_time(date(2026, 7, 1)) == datetime(2026, 7, 1, 16, tzinfo=UTC)
    assert london.post_time(date(2026, 12, 1)) == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_a_post_time_in_the_spring_gap_moves_forward():
    new_york = Schedule(post_at=time(2, 30), timezone="America/New_York")
    posted = new_york.post_time(date(2026, 3, 8)).astimezone(new_york.zone)
    assert (posted.hour, posted.minute) == (3, 30)


def test_a_post_time_in_the_repeated_autumn_hour_is_the_first_one():
    new_york = Schedule(post_at=time(1, 30), timezone="America/New_York")
    assert new_york.post_time(date(2026, 11, 1)) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_a_reveal_never_comes_before_its_post():
    late_post = Schedule(post_at=time(18), reveal_at=time(9))
    assert late_post.reveal_time(date(2026, 1, 5)) == datetime(2026, 1, 6, 9, tzinfo=UTC)
    delayed = Schedule(reveal_at=None, reveal_after=timedelta(hours=6))
    assert delayed.reveal_time(date(2026, 1, 5)) == datetime(2026, 1, 5, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("weekdays", {0, 1, 2, 3, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("mon,wed,fri", {0, 2, 4}),
        ("tuesdays", {1}),
        ("daily", set(range(7))),
    ],
)
def test_weekdays_parse(text: str, days: set[int]):
    assert parse_weekdays(text) == frozenset(days)


def test_bad_schedule_values_are_named():
    with pytest.raises(ScheduleError, match="'funday' is not a weekday"):
        parse_weekdays("funday")
    with pytest.raises(ScheduleError, match="not an IANA time zone"):
        parse_timezone("Europe/Atlantis")
    with pytest.raises(ScheduleError, match="not a delay"):
        parse_delay("soon")
    assert parse_timezone("europe/london").key == "Europe/London"
