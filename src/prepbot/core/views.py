"""Neutral views: what the bot shows, before any platform decides how it looks.

Services return these; the console renders them as text, Slack as Block Kit, Discord as
embeds. Plain frozen data; imports no database and no chat platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from prepbot.content.model import Scenario, Topic

MAX_MENTIONS = 50  # members @-mentioned in one reveal; the rest are counted, not pinged
MAX_MILESTONE_MENTIONS = 10  # of those, at most this many streak milestones


@dataclass(frozen=True)
class MemberRef:
    """A member as a platform knows them: its id (for mentions) and a display name."""

    id: str
    name: str


@dataclass(frozen=True)
class QuestionCard:
    """The question of the day (or a practice question, or one looked up)."""

    scenario_id: str
    title: str
    kind: str
    difficulty: str
    topics: tuple[str, ...]
    company: str | None
    role: str | None
    situation: str
    prompts: tuple[str, ...]
    round_date: date | None = None
    reveal_at: datetime | None = None
    timezone: str | None = None
    practice: bool = False
    rotation_left: int | None = None  # set when this post warns that the rotation runs out
    private: bool = False
    """The group answers privately: the post carries an Answer button, not "reply in thread"."""
    answer_count: int | None = None
    """In private mode, how many have answered so far (shown as "🔒 5 answers so far")."""

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        topics: dict[str, Topic],
        *,
        round_date: date | None = None,
        reveal_at: datetime | None = None,
        timezone: str | None = None,
        practice: bool = False,
        rotation_left: int | None = None,
        private: bool = False,
    ) -> QuestionCard:
        """Build the card of a scenario."""
        return cls(
            scenario_id=scenario.id,
            title=scenario.title,
            kind=scenario.kind.value,
            difficulty=scenario.difficulty.value,
            topics=tuple(topics[t].name if t in topics else t for t in scenario.topics),
            company=scenario.context.company,
            role=scenario.context.role,
            situation=scenario.context.situation,
            prompts=scenario.prompts,
            round_date=round_date,
            reveal_at=reveal_at,
            timezone=timezone,
            practice=practice,
            rotation_left=rotation_left,
            private=private,
        )


def answer_count_line(count: int) -> str:
    """Return the running count a private-mode question shows: '🔒 5 answers so far'."""
    if count == 0:
        return "🔒 No answers yet: press Answer to write yours privately."
    return f"🔒 {count:,} answer{'s' if count != 1 else ''} so far"


@dataclass(frozen=True)
class Milestone:
    """A member whose streak just reached a milestone."""

    member: MemberRef
    streak: int


@dataclass(frozen=True)
class Credits:
    """Who a reveal mentions, within MAX_MENTIONS, and how many more it only counts."""

    on_time: tuple[MemberRef, ...]
    on_time_more: int
    late: tuple[MemberRef, ...]
    late_more: int
    milestones: tuple[Milestone, ...]
    milestones_more: int


@dataclass(frozen=True)
class PointCoverage:
    """How many of a round's graded answers made one key point; never who."""

    point: str
    made: int


@dataclass(frozen=True)
class SharedAnswer:
    """A private answer made public at the reveal, with its author."""

    member: MemberRef
    text: str


FOLDED_MARK = "… (folded)"


def fold(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters at a word, marked as folded."""
    if len(text) <= limit:
        return text
    room = max(limit - len(FOLDED_MARK), 1)
    cut = text[:room]
    space = cut.rfind(" ")
    if space > room // 2:
        cut = cut[:space]
    return cut.rstrip() + FOLDED_MARK


def share_within(
    answers: tuple[SharedAnswer, ...], *, budget: int, each_at_most: int, each_at_least: int
) -> tuple[tuple[SharedAnswer, ...], int]:
    """Fold answers to share ``budget`` characters; return those that fit and how many did not.

    Every answer gets an equal share (between ``each_at_least`` and ``each_at_most``
    characters); a short one leaves its unused share to the rest. Answers past what even the
    smallest share allows are counted, not shown.
    """
    if not answers:
        return (), 0
    fits = max(min(len(answers), budget // max(each_at_least, 1)), 1)
    shown, left = [], budget
    for index, answer in enumerate(answers[:fits]):
        share = min(each_at_most, max(each_at_least, left // (fits - index)))
        text = fold(answer.text, share)
        shown.append(SharedAnswer(answer.member, text))
        left -= len(text)
    return tuple(shown), len(answers) - len(shown)


@dataclass(frozen=True)
class RevealCard:
    """The reveal in a round's thread (or the answer part of a looked-up scenario)."""

    scenario_id: str
    title: str
    insights: tuple[str, ...]
    trap_answer: str | None
    trap_why: str | None
    follow_ups: tuple[str, ...]
    source_author: str
    source_handle: str | None
    source_url: str
    on_time: tuple[MemberRef, ...] = ()
    late: tuple[MemberRef, ...] = ()
    milestones: tuple[Milestone, ...] = ()
    is_round: bool = False
    coverage: tuple[PointCoverage, ...] = ()
    """Per key point of the rubric, how many graded answers made it (the group line)."""
    graded: int = 0
    """How many on-time answers were graded."""
    shared: tuple[SharedAnswer, ...] = ()
    """In private mode, the answers written privately, published with their authors."""

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        *,
        on_time: tuple[MemberRef, ...] = (),
        late: tuple[MemberRef, ...] = (),
        milestones: tuple[Milestone, ...] = (),
        is_round: bool = False,
        coverage: tuple[PointCoverage, ...] = (),
        graded: int = 0,
        shared: tuple[SharedAnswer, ...] = (),
    ) -> RevealCard:
        """Build the reveal of a scenario."""
        return cls(
            scenario_id=scenario.id,
            title=scenario.title,
            insights=scenario.insights,
            trap_answer=scenario.trap.answer if scenario.trap else None,
            trap_why=scenario.trap.why_it_falls_short if scenario.trap else None,
            follow_ups=tuple(f.question for f in scenario.follow_ups),
            source_author=scenario.source.author,
            source_handle=scenario.source.handle,
            source_url=str(scenario.source.url),
            on_time=on_time,
            late=late,
            milestones=milestones,
            is_round=is_round,
            coverage=coverage,
            graded=graded,
            shared=shared,
        )

    def credits(self, limit: int = MAX_MENTIONS) -> Credits:
        """Return whom to mention: milestones first, then on-time, then late; at most ``limit``.

        A reveal with thousands of answers must not ping thousands of people in one message;
        the members past the limit are counted ("and 1,950 others") instead.
        """
        milestones = self.milestones[: min(limit, MAX_MILESTONE_MENTIONS)]
        budget = limit - len(milestones)
        on_time = self.on_time[:budget]
        late = self.late[: budget - len(on_time)]
        return Credits(
            on_time=on_time,
            on_time_more=len(self.on_time) - len(on_time),
            late=late,
            late_more=len(self.late) - len(late),
            milestones=milestones,
            milestones_more=len(self.milestones) - len(milestones),
        )


def others(shown: int, more: int) -> str | None:
    """Return the words for members counted but not named: 'and 1,950 others', or None."""
    if not more:
        return None
    if not shown:
        return f"{more:,} member{'s' if more != 1 else ''}"
    return f"and {more:,} other{'s' if more != 1 else ''}"


def credit_items(mentions: list[str], more: int) -> list[str]:
    """Return mentions followed by the count of the rest, ready to join with ', '."""
    rest = others(len(mentions), more)
    return [*mentions, rest] if rest else mentions


@dataclass(frozen=True)
class PendingReveal:
    """A round of a scenario still open in the caller's community: where and when it reveals."""

    channel_id: str
    channel_name: str
    reveal_at: datetime
    timezone: str


@dataclass(frozen=True)
class ScenarioDetail:
    """One scenario for /prep show: in full, or its question only while a round of it is open.

    ``reveal`` is None exactly when ``withheld`` names the open rounds whose reveal is to come.
    """

    question: QuestionCard
    reveal: RevealCard | None
    withheld: tuple[PendingReveal, ...] = ()


@dataclass(frozen=True)
class LeaderboardRow:
    """One member's line on a leaderboard."""

    rank: int
    member: MemberRef
    on_time: int
    late: int
    streak: int
    points: int = 0


@dataclass(frozen=True)
class LeaderboardView:
    """A ranking of members: on-time answers first, then key points, then current streak."""

    scope: str
    period: str
    since: date | None
    rows: tuple[LeaderboardRow, ...]
    open_rounds: int = 0  # answers to these count after their reveal


CALENDAR_WEEKS = 12  # a member's streak calendar shows this many weeks, ending this week
# What a day of a member's streak calendar can be.
ON_TIME, LATE, MISSED, OPEN, NO_ROUND = "on-time", "late", "missed", "open", "none"


def calendar_start(today: date) -> date:
    """Return the Monday a streak calendar starts on: CALENDAR_WEEKS weeks ending with today's."""
    return today - timedelta(days=today.weekday()) - timedelta(weeks=CALENDAR_WEEKS - 1)


@dataclass(frozen=True)
class StreakView:
    """One member's streak and totals in a study group, and their calendar of rounds."""

    member: MemberRef
    current: int
    best: int
    on_time: int
    late: int
    pending: int = 0  # on-time answers in rounds not revealed yet: they count at the reveal
    calendar: tuple[tuple[date, str], ...] = ()
    """The group's rounds in the calendar's weeks: (local date, ON_TIME/LATE/MISSED/OPEN)."""
    today: date | None = None
    """The group's today, where the calendar ends (None: no calendar)."""


DIGEST_LEADERS = 5  # members named as the week's leaders in a digest
DIGEST_POINTS = 3  # key points shown as most and as least covered
PICTURE_MEMBERS = 12  # members drawn in a digest picture's participation chart


@dataclass(frozen=True)
class DigestRound:
    """One round of a digest's week: its question, a link to its thread and who answered."""

    local_date: date
    scenario_id: str
    title: str
    link: str | None  # the question's thread on its platform (None: the console)
    on_time: int
    late: int


@dataclass(frozen=True)
class DigestPoint:
    """A key point of one of the week's rounds and how many graded answers made it."""

    point: str
    title: str  # the scenario it belongs to
    made: int
    graded: int

    @property
    def share(self) -> float:
        """Return the fraction of graded answers that made the point."""
        return self.made / self.graded if self.graded else 0.0


@dataclass(frozen=True)
class DigestMember:
    """One member's week: answers on time and late, key points earned, current streak."""

    member: MemberRef
    on_time: int
    late: int
    points: int
    streak: int


@dataclass(frozen=True)
class DigestCard:
    """A study group's weekly digest: the week's rounds, participation, coverage and leaders.

    ``calendar`` is the group's streak calendar (the CALENDAR_WEEKS weeks ending with
    ``period_end``): each round's local date and how many members answered it on time.
    """

    group: str  # the channel's name
    period_start: date
    period_end: date
    rounds: tuple[DigestRound, ...]
    members: int  # distinct members who answered this week (on time or late)
    answers: int  # answers this week
    most_covered: tuple[DigestPoint, ...] = ()
    least_covered: tuple[DigestPoint, ...] = ()
    milestones: tuple[Milestone, ...] = ()
    leaders: tuple[DigestMember, ...] = ()
    participation: tuple[DigestMember, ...] = ()  # at most PICTURE_MEMBERS, most active first
    calendar: tuple[tuple[date, int], ...] = ()
    archive_link: str | None = None  # the group's web archive, when the bot serves one

    @property
    def picture_name(self) -> str:
        """Return the picture's file name: unique per group and week, so a repair finds it."""
        return f"prepbot-digest-{self.period_end.isoformat()}.png"


@dataclass(frozen=True)
class SearchResult:
    """One line of search results."""

    scenario_id: str
    title: str
    company: str | None


@dataclass(frozen=True)
class SearchResults:
    """Ranked scenarios for a query."""

    query: str
    results: tuple[SearchResult, ...]


@dataclass(frozen=True)
class TopicEntry:
    """A topic and how many scenarios have it."""

    id: str
    name: str
    scenarios: int


@dataclass(frozen=True)
class TopicsView:
    """The topic vocabulary."""

    topics: tuple[TopicEntry, ...]


@dataclass(frozen=True)
class HelpView:
    """How to use /prep: (usage, what it does) pairs."""

    commands: tuple[tuple[str, str], ...]
    admin_commands: tuple[tuple[str, str], ...]
    subscription: str | None = None


@dataclass(frozen=True)
class StatusProblem:
    """Something wrong right now that touches a study group (or the whole bot)."""

    component: str
    message: str
    since: datetime


@dataclass(frozen=True)
class StatusView:
    """An admin's view of a study group: schedule, what comes next, pause, rotation, problems.

    Times are UTC moments; ``now`` lets a renderer say how far away they are. ``next_post`` is
    None while the group is paused. ``today`` is 'off' (not a scheduled day), 'none', 'claimed',
    'posted' or 'revealed'.
    """

    channel: str
    now: datetime
    timezone: str
    post_at: str
    days: str
    reveal: str
    topics: tuple[str, ...]
    difficulties: tuple[str, ...]
    today: str
    today_date: date
    next_post: datetime | None
    next_reveal: datetime | None
    next_reveal_is_open_round: bool
    paused: bool
    pause_cause: str | None
    pause_next_step: str | None
    pause_detail: str | None
    paused_since: datetime | None
    rotation_left: int
    rotation_cycle: int
    eligible: int
    problems: tuple[StatusProblem, ...] = ()
    answer_mode: str = "thread"
    digest: str = "auto"  # when the weekly digest goes out (core.digests' setting)


@dataclass(frozen=True)
class Notice:
    """A short confirmation or status line."""

    text: str


@dataclass(frozen=True)
class ErrorView:
    """Something the user asked for that cannot be done, and what to do instead."""

    text: str


@dataclass(frozen=True)
class FeedbackView:
    """A member's private feedback on their answer to one round: points made and missed."""

    scenario_id: str
    title: str
    round_date: date
    made: tuple[str, ...]
    """The one-sentence text of each key point the answer made."""
    missed: tuple[str, ...]
    red_flags: tuple[str, ...] = ()
    stuffed: bool = False

    @property
    def points(self) -> int:
        """Return the key points credited."""
        return len(self.made)

    @property
    def total(self) -> int:
        """Return the rubric's number of key points."""
        return len(self.made) + len(self.missed)


View = (
    QuestionCard
    | RevealCard
    | ScenarioDetail
    | LeaderboardView
    | StreakView
    | SearchResults
    | TopicsView
    | HelpView
    | StatusView
    | Notice
    | ErrorView
    | FeedbackView
)


@dataclass(frozen=True)
class Response:
    """A view to show in answer to a command; private ones only the caller sees."""

    views: tuple[View, ...] = field(default_factory=tuple)
    private: bool = False

    @classmethod
    def one(cls, view: View, *, private: bool = False) -> Response:
        """Return a response of a single view."""
        return cls(views=(view,), private=private)
