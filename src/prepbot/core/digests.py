"""When a study group's weekly digest is due, and which days it sums up.

A group's digest setting is ``auto`` (the default: once the week's last scheduled round is
revealed, summing up that Monday-to-Sunday week), ``off``, or a weekday and local time such
as ``fri-17:00`` (summing up the seven days before that day). Pure: imports no database, no
platform and no clock of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from prepbot.core.schedule import DAY_NAMES, FULL_DAY_NAMES, Schedule, ScheduleError, parse_time

AUTO, OFF = "auto", "off"
DIGEST_GRACE = timedelta(days=2)  # a digest missed by longer (the bot was down) is skipped
SETTING = re.compile(r"^(?P<day>[a-z]+)[-@](?P<time>\d{1,2}:\d{2})$")


@dataclass(frozen=True)
class DigestWeek:
    """The days one digest sums up (local dates, both ends included) and when it is due."""

    start: date
    end: date
    due: datetime  # UTC


def parse_digest(text: str) -> str:
    """Return a digest setting in its stored form: ``auto``, ``off`` or e.g. ``fri-17:00``."""
    word = text.strip().lower()
    if word in (AUTO, OFF):
        return word
    match = SETTING.match(word)
    day = match["day"] if match else ""
    if match is None or (day not in DAY_NAMES and day not in FULL_DAY_NAMES):
        raise ScheduleError(
            f"'{text}' is not a digest time: use auto (after the week's last reveal), off, "
            "or a day and time like fri-17:00"
        )
    short = DAY_NAMES[FULL_DAY_NAMES.index(day)] if day in FULL_DAY_NAMES else day
    return f"{short}-{parse_time(match['time']):%H:%M}"


def describe_digest(setting: str) -> str:
    """Return a digest setting in words."""
    if setting == OFF:
        return "off (`digest=auto` turns it on)"
    if setting == AUTO:
        return "weekly, after the reveal of the week's last question (`digest=off` stops it)"
    day, _, at = setting.partition("-")
    name = FULL_DAY_NAMES[DAY_NAMES.index(day)].capitalize()
    return f"weekly, {name}s at {at}, on the seven days before (`digest=off` stops it)"


def due_weeks(setting: str, schedule: Schedule, now: datetime) -> list[DigestWeek]:
    """Return this and last week's digests whose time has come (at most two), oldest first.

    ``auto``: the Monday-to-Sunday week, due at the reveal time of its last scheduled day.
    ``<day>-HH:MM``: the seven days before that weekday, due then, local time.
    """
    if setting == OFF:
        return []
    today = schedule.local_date(now)
    weeks: list[DigestWeek] = []
    if setting == AUTO:
        monday = today - timedelta(days=today.weekday())
        for start in (monday - timedelta(weeks=1), monday):
            last = start + timedelta(days=max(schedule.weekdays))  # weekday 0 is Monday
            weeks.append(DigestWeek(start, start + timedelta(days=6), schedule.reveal_time(last)))
    else:
        day_name, _, at = setting.partition("-")
        latest = today - timedelta(days=(today.weekday() - DAY_NAMES.index(day_name)) % 7)
        for day in (latest - timedelta(weeks=1), latest):
            due = schedule.at_local(day, parse_time(at))
            weeks.append(DigestWeek(day - timedelta(days=7), day - timedelta(days=1), due))
    return [week for week in weeks if week.due <= now]
