"""Schedule maths: weekdays, local post and reveal times, and the next scheduled day.

A subscription posts at a local wall-clock time on chosen weekdays in an IANA time zone, and
reveals at a local time or a delay after the post. Pure; imports no database and no platform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_SETS = {
    "daily": frozenset(range(7)),
    "everyday": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
TIME_PATTERN = re.compile(r"^(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule value that cannot be understood."""


def parse_time(text: str) -> time:
    """Parse 'HH:MM' (24-hour) into a time."""
    match = TIME_PATTERN.match(text.strip())
    if match is None:
        raise ScheduleError(f"'{text}' is not a time: use HH:MM, 24-hour (e.g. 09:30)")
    return time(int(match["h"]), int(match["m"]))


def parse_timezone(text: str) -> ZoneInfo:
    """Return the IANA time zone named ``text`` (e.g. Europe/London), case forgiven."""
    name = text.strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    for candidate in available_timezones():
        if candidate.lower() == name.lower():
            return ZoneInfo(candidate)
    raise ScheduleError(f"'{text}' is not an IANA time zone (e.g. Europe/London, Asia/Kolkata)")


def looks_like_timezone(text: str) -> bool:
    """Say whether a word is meant as a time zone (has a '/' or is UTC/GMT)."""
    return "/" in text or text.upper() in {"UTC", "GMT"}


def parse_weekdays(text: str) -> frozenset[int]:
    """Parse 'mon-fri', 'mon,wed,fri', 'weekdays', 'daily' into weekday numbers (Monday = 0)."""
    words = text.strip().lower()
    if words in DAY_SETS:
        return DAY_SETS[words]
    days: set[int] = set()
    for part in words.split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            start, end = _day(first), _day(last)
            span = range(start, end + 1) if start <= end else [*range(start, 7), *range(end + 1)]
            days.update(span)
        else:
            days.add(_day(part))
    return frozenset(days)


def looks_like_weekdays(text: str) -> bool:
    """Say whether a word is meant as a set of weekdays."""
    words = text.lower()
    if words in DAY_SETS:
        return True
    pieces = [piece for part in words.split(",") for piece in part.split("-")]
    return all(_day_index(piece) is not None for piece in pieces)


def _day_index(text: str) -> int | None:
    word = text.strip().lower().removesuffix("s") if len(text.strip()) > 4 else text.strip()
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    if word in FULL_DAY_NAMES:
        return FULL_DAY_NAMES.index(word)
    return None


def _day(text: str) -> int:
    index = _day_index(text)
    if index is None:
        raise ScheduleError(f"'{text}' is not a weekday: use mon, tue, wed, thu, fri, sat, sun")
    return index


def format_weekdays(days: frozenset[int]) -> str:
    """Return weekdays the way a person writes them: 'mon-fri', 'daily', 'mon,wed,fri'."""
    for name, members in (("daily", DAY_SETS["daily"]), ("mon-fri", DAY_SETS["weekdays"])):
        if days == members:
            return name
    return ",".join(DAY_NAMES[d] for d in sorted(days))


@dataclass(frozen=True)
class Schedule:
    """When a subscription posts and reveals."""

    post_at: time = time(9, 0)
    timezone: str = "UTC"
    weekdays: frozenset[int] = field(default_factory=lambda: DAY_SETS["weekdays"])
    reveal_at: time | None = time(17, 0)
    reveal_after: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise ScheduleError("a schedule needs at least one weekday")
        if (self.reveal_at is None) == (self.reveal_after is None):
            raise ScheduleError("a schedule reveals either at a time or after a delay")
        parse_timezone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        """Return the schedule's time zone."""
        return ZoneInfo(self.timezone)

    def local_date(self, moment: datetime) -> date:
        """Return the date in the schedule's time zone at ``moment``."""
        return moment.astimezone(self.zone).date()

    def is_scheduled(self, day: date) -> bool:
        """Say whether a round is due on ``day``."""
        return day.weekday() in self.weekdays

    def next_day(self, after: date) -> date:
        """Return the first scheduled date strictly after ``after``."""
        day = after + timedelta(days=1)
        while not self.is_scheduled(day):
            day += timedelta(days=1)
        return day

    def at_local(self, day: date, at: time) -> datetime:
        """Return the UTC moment of a local wall-clock time on ``day`` (gaps move forward)."""
        return _resolve(datetime.combine(day, at), self.zone)

    def post_time(self, day: date) -> datetime:
        """Return when the round of ``day`` is posted, in UTC (gaps move forward, folds once)."""
        return _resolve(datetime.combine(day, self.post_at), self.zone)

    def reveal_time(self, day: date) -> datetime:
        """Return when the round of ``day`` is revealed, in UTC; never before its post."""
        posted = self.post_time(day)
        if self.reveal_after is not None:
            return posted + self.reveal_after
        assert self.reveal_at is not None
        reveal = _resolve(datetime.combine(day, self.reveal_at), self.zone)
        if reveal <= posted:
            reveal = _resolve(datetime.combine(day + timedelta(days=1), self.reveal_at), self.zone)
        return reveal

    def last_post_at_or_before(self, moment: datetime) -> tuple[date, datetime] | None:
        """Return the latest scheduled (date, post time) not after ``moment``, within a week."""
        day = self.local_date(moment) + timedelta(days=1)
        for _ in range(9):
            if self.is_scheduled(day) and self.post_time(day) <= moment:
                return day, self.post_time(day)
            day -= timedelta(days=1)
        return None

    def next_post_after(self, moment: datetime) -> tuple[date, datetime]:
        """Return the first scheduled (date, post time) strictly after ``moment``."""
        day = self.local_date(moment) - timedelta(days=1)
        while True:
            if self.is_scheduled(day) and self.post_time(day) > moment:
                return day, self.post_time(day)
            day += timedelta(days=1)

    def reveal_due(self, day: date, posted_at: datetime) -> datetime:
        """Return when the round of ``day``, posted at ``posted_at``, is revealed.

        A delay counts from the actual post (a late post reveals late); a local reveal time
        stays put. Either way the reveal never comes before the post nor after the next post.
        """
        if self.reveal_after is not None:
            due = posted_at + self.reveal_after
        else:
            due = max(self.reveal_time(day), posted_at)
        _, next_post = self.next_post_after(max(self.post_time(day), posted_at))
        return min(due, next_post)

    def describe(self) -> str:
        """Return the schedule in words, e.g. '09:00 mon-fri Europe/London, reveal 17:00'."""
        reveal = (
            f"reveal {self.reveal_at:%H:%M}"
            if self.reveal_at is not None
            else f"reveal {_describe_delay(self.reveal_after)} after posting"
        )
        return f"{self.post_at:%H:%M} {format_weekdays(self.weekdays)} {self.timezone}, {reveal}"


def _describe_delay(delay: timedelta | None) -> str:
    minutes = int((delay or timedelta()).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def _resolve(local: datetime, zone: ZoneInfo) -> datetime:
    """Turn a wall-clock time into UTC.

    With fold=0 a time inside a spring-forward gap lands as far past the gap as it was into it
    (02:30 becomes 03:30), and a time in the repeated autumn hour is its first occurrence.
    """
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def parse_delay(text: str) -> timedelta:
    """Parse '+6h', '+90m' or '+1h30m' into a delay."""
    match = re.fullmatch(r"\+?(?:(?P<h>\d{1,2})h)?(?:(?P<m>\d{1,4})m)?", text.strip().lower())
    if match is None or not (match["h"] or match["m"]):
        raise ScheduleError(f"'{text}' is not a delay: use e.g. +6h, +90m or +1h30m")
    delay = timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))
    if not timedelta(minutes=1) <= delay <= timedelta(hours=23):
        raise ScheduleError("a reveal delay must be between 1 minute and 23 hours")
    return delay
