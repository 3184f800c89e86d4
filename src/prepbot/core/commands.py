"""The ``/prep`` grammar, parsed once into command objects that every platform shares.

``parse_prep("leaderboard month")`` returns ``Leaderboard(period=Period.MONTH)``; bad input
raises ``CommandError`` carrying a short usage line for the user. Topic names are checked by
the services (they know the catalog); everything else is checked here. Pure; imports no
database and no chat platform.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import time, timedelta
from enum import StrEnum

from prepbot.core.digests import parse_digest
from prepbot.core.schedule import (
    ScheduleError,
    looks_like_timezone,
    looks_like_weekdays,
    parse_delay,
    parse_time,
    parse_timezone,
    parse_weekdays,
)

DIFFICULTIES = ("easy", "medium", "hard")
MAX_COMMAND_LENGTH = 500
MAX_ANSWER_LENGTH = 4000  # a private answer; Discord's modal text input holds 4,000 characters


class Period(StrEnum):
    """A leaderboard's time window."""

    WEEK = "week"
    MONTH = "month"
    ALL = "all"


class CommandError(ValueError):
    """Input that is not a valid ``/prep`` command; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class Help:
    """Show how to use /prep."""


@dataclass(frozen=True)
class Today:
    """Show this channel's open question."""


@dataclass(frozen=True)
class Ask:
    """Give the member a private practice question, not scored."""

    topic: str | None = None


@dataclass(frozen=True)
class Search:
    """Find scenarios by words."""

    words: str


@dataclass(frozen=True)
class Show:
    """Show one scenario in full."""

    scenario_id: str


@dataclass(frozen=True)
class Topics:
    """List the topics."""


@dataclass(frozen=True)
class Streak:
    """Show a member's streak (the caller's when no member is named)."""

    member: str | None = None


@dataclass(frozen=True)
class Feedback:
    """Show the caller's feedback on a recent answer (latest, or one scenario's)."""

    scenario_id: str | None = None


@dataclass(frozen=True)
class FeedbackMessages:
    """Turn the caller's private feedback messages after each reveal on or off."""

    wanted: bool


@dataclass(frozen=True)
class Hint:
    """Give the caller a nudge on this channel's open question, never its answer."""


@dataclass(frozen=True)
class AnswerPrivately:
    """Answer this channel's open question privately (or withdraw it: empty ``text``)."""

    text: str


@dataclass(frozen=True)
class ForgetMe:
    """Erase a member's answers and stats from this community (after a confirmation).

    ``member`` names another member (admins only: someone who left); None is the caller.
    """

    member: str | None = None
    confirmed: bool = False


@dataclass(frozen=True)
class Archive:
    """Hand the caller the group's web archive link and its last rounds (privately).

    ``rotate`` (admins only) replaces the link's secret, so the old link stops working.
    """

    rotate: bool = False


@dataclass(frozen=True)
class Leaderboard:
    """Rank members of this study group (or the whole community) for a period."""

    period: Period = Period.WEEK
    community: bool = False


@dataclass(frozen=True)
class ScheduleChange:
    """The schedule and filter fields an admin typed; None means 'leave as it is'."""

    post_at: time | None = None
    timezone: str | None = None
    weekdays: frozenset[int] | None = None
    reveal_at: time | None = None
    reveal_after: timedelta | None = None
    topics: tuple[str, ...] | None = None
    difficulties: tuple[str, ...] | None = None
    answer_mode: str | None = None
    digest: str | None = None  # auto, off or e.g. fri-17:00


class AnswerMode:
    """How a study group answers: in the question's thread, or privately until the reveal."""

    THREAD = "thread"
    PRIVATE = "private"
    ALL = (THREAD, PRIVATE)


@dataclass(frozen=True)
class Subscribe:
    """Make this channel a study group (admin)."""

    change: ScheduleChange


@dataclass(frozen=True)
class Reschedule:
    """Change this study group's schedule or filters (admin)."""

    change: ScheduleChange


@dataclass(frozen=True)
class Status:
    """Show this study group's schedule, next post and reveal, pause and rotation (admin)."""


@dataclass(frozen=True)
class Pause:
    """Stop posting until resumed (admin)."""


@dataclass(frozen=True)
class Resume:
    """Start posting again (admin)."""


@dataclass(frozen=True)
class Unsubscribe:
    """Stop this study group for good (admin)."""


@dataclass(frozen=True)
class PostNow:
    """Post today's question now (admin)."""


@dataclass(frozen=True)
class RevealNow:
    """Reveal the open question now (admin)."""


Command = (
    Help
    | Today
    | Ask
    | Search
    | Show
    | Topics
    | Streak
    | Leaderboard
    | Feedback
    | FeedbackMessages
    | Hint
    | AnswerPrivately
    | ForgetMe
    | Archive
    | Subscribe
    | Reschedule
    | Status
    | Pause
    | Resume
    | Unsubscribe
    | PostNow
    | RevealNow
)
ADMIN_COMMANDS = (Subscribe, Reschedule, Status, Pause, Resume, Unsubscribe, PostNow, RevealNow)

SCHEDULE_ARGS = (
    "[HH:MM] [timezone] [days] [reveal=HH:MM|reveal=+6h] [answers=thread|private] "
    "[digest=auto|off|fri-17:00] "
    "[easy|medium|hard] [topics…|all]"
)
USAGE: dict[str, str] = {
    "help": "/prep help",
    "today": "/prep today",
    "ask": "/prep ask [topic]",
    "search": "/prep search <words>",
    "show": "/prep show <id>",
    "topics": "/prep topics",
    "streak": "/prep streak [@member]",
    "leaderboard": "/prep leaderboard [week|month|all] [community]",
    "hint": "/prep hint",
    "answer": "/prep answer <your answer> | /prep answer --withdraw",
    "forget-me": "/prep forget-me [@member] [confirm]",
    "feedback": "/prep feedback [id|on|off]",
    "archive": "/prep archive [rotate]",
    "subscribe": f"/prep subscribe {SCHEDULE_ARGS}",
    "schedule": f"/prep schedule {SCHEDULE_ARGS}",
    "status": "/prep status",
    "pause": "/prep pause",
    "resume": "/prep resume",
    "unsubscribe": "/prep unsubscribe",
    "post-now": "/prep post-now",
    "reveal-now": "/prep reveal-now",
}
ADMIN_WORDS = frozenset(
    {"subscribe", "schedule", "status", "pause", "resume", "unsubscribe", "post-now", "reveal-now"}
)
MEMBER_MENTION = re.compile(r"^<@!?(?P<id>[A-Za-z0-9_.-]+)(?:\|[^>]*)?>$|^@(?P<name>\S+)$")


def is_admin_command(command: Command) -> bool:
    """Say whether only admins may run ``command``."""
    return isinstance(command, ADMIN_COMMANDS)


def parse_prep(text: str) -> Command:
    """Parse what follows ``/prep`` into a command, or raise CommandError with a usage line."""
    words = text.split()
    if words and words[0].lower() == "answer":
        if len(text) > MAX_ANSWER_LENGTH:
            raise CommandError(
                f"That answer is too long ({len(text):,} characters; at most "
                f"{MAX_ANSWER_LENGTH:,}). Nothing was stored."
            )
        return _answer(text.strip()[len(words[0]) :].strip(), f"Usage: `{USAGE['answer']}`")
    if len(text) > MAX_COMMAND_LENGTH:
        raise CommandError(f"That command is too long (over {MAX_COMMAND_LENGTH} characters).")
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb not in USAGE:
        close = difflib.get_close_matches(verb, list(USAGE), n=1, cutoff=0.6)
        hint = f" Did you mean `{USAGE[close[0]]}`?" if close else ""
        raise CommandError(f"Unknown command `{words[0]}`.{hint} Try `/prep help`.")
    usage = f"Usage: `{USAGE[verb]}`"
    match verb:
        case "hint":
            _no_args(args, usage)
            return Hint()
        case "feedback":
            if len(args) > 1:
                raise CommandError(f"{usage} (one scenario id, or on/off)")
            if not args:
                return Feedback()
            word = args[0].lower()
            if word in {"on", "off"}:
                return FeedbackMessages(wanted=word == "on")
            return Feedback(scenario_id=word)
        case "help" | "today" | "topics" | "status" | "pause" | "resume" | "unsubscribe":
            _no_args(args, usage)
            simple: dict[str, Command] = {
                "help": Help(),
                "today": Today(),
                "topics": Topics(),
                "status": Status(),
                "pause": Pause(),
                "resume": Resume(),
                "unsubscribe": Unsubscribe(),
            }
            return simple[verb]
        case "post-now":
            _no_args(args, usage)
            return PostNow()
        case "reveal-now":
            _no_args(args, usage)
            return RevealNow()
        case "ask":
            if len(args) > 1:
                raise CommandError(f"{usage} (one topic at most)")
            return Ask(topic=args[0].lower() if args else None)
        case "search":
            if not args:
                raise CommandError(f"{usage} (what should I look for?)")
            return Search(words=" ".join(args))
        case "show":
            if len(args) != 1:
                raise CommandError(f"{usage} (one scenario id, e.g. from `/prep search`)")
            return Show(scenario_id=args[0])
        case "streak":
            if len(args) > 1:
                raise CommandError(usage)
            return Streak(member=_member(args[0], usage) if args else None)
        case "leaderboard":
            return _leaderboard(args, usage)
        case "forget-me":
            return _forget_me(args, usage)
        case "archive":
            if len(args) > 1 or (args and args[0].lower() != "rotate"):
                raise CommandError(f"{usage} (`rotate`, admins only, makes a new link)")
            return Archive(rotate=bool(args))
        case "subscribe":
            return Subscribe(change=_schedule_change(args, usage))
        case _:  # "schedule"
            change = _schedule_change(args, usage)
            if change == ScheduleChange():
                raise CommandError(f"{usage} (say what to change)")
            return Reschedule(change=change)


WITHDRAW = frozenset({"--withdraw", "withdraw", "—withdraw"})  # Slack turns -- into an em dash


def _answer(text: str, usage: str) -> AnswerPrivately:
    """Parse ``/prep answer``: the answer as typed (line breaks kept), or ``--withdraw``."""
    if text.lower() in WITHDRAW:
        return AnswerPrivately(text="")
    if not text:
        raise CommandError(f"{usage} (write your answer after `answer`)")
    return AnswerPrivately(text=text)


def _forget_me(args: list[str], usage: str) -> ForgetMe:
    """Parse ``/prep forget-me [@member] [confirm]`` in either order, each once."""
    member, confirmed = None, False
    for word in args:
        if word.lower() == "confirm" and not confirmed:
            confirmed = True
        elif member is None and MEMBER_MENTION.match(word):
            member = _member(word, usage)
        else:
            raise CommandError(f"{usage} (`{word}` is neither @member nor confirm)")
    return ForgetMe(member=member, confirmed=confirmed)


def _no_args(args: list[str], usage: str) -> None:
    if args:
        raise CommandError(f"{usage} (it takes no arguments)")


def _member(word: str, usage: str) -> str:
    match = MEMBER_MENTION.match(word)
    if match is None:
        raise CommandError(f"{usage} (name a member as @name)")
    return match["id"] or match["name"]


def _leaderboard(args: list[str], usage: str) -> Leaderboard:
    period, community = Period.WEEK, False
    seen_period = False
    for word in (a.lower() for a in args):
        if word in {p.value for p in Period} and not seen_period:
            period, seen_period = Period(word), True
        elif word in {"community", "server", "workspace"} and not community:
            community = True
        else:
            raise CommandError(f"{usage} (`{word}` is not a period)")
    return Leaderboard(period=period, community=community)


EVERYTHING = ("all", "any")  # the schedule word that clears the topic and difficulty filters


def _schedule_change(args: list[str], usage: str) -> ScheduleChange:
    """Parse schedule words in any order: a time, a zone, days, reveal=…, difficulty, topics."""
    values: dict[str, object] = {}
    topics: list[str] = []
    difficulties: list[str] = []

    def once(key: str, value: object, word: str) -> None:
        if key in values:
            raise CommandError(f"{usage} (`{word}`: {key.replace('_', ' ')} given twice)")
        values[key] = value

    try:
        for word in args:
            lowered = word.lower()
            if lowered.startswith("answers="):
                mode = lowered.split("=", 1)[1]
                if mode not in AnswerMode.ALL:
                    raise CommandError(
                        f"{usage} (`{word}`: answers are `thread` (discussed in the open) "
                        "or `private` (hidden until the reveal))"
                    )
                once("answer_mode", mode, word)
            elif lowered.startswith("digest="):
                once("digest", parse_digest(word.split("=", 1)[1]), word)
            elif lowered.startswith("reveal="):
                spec = word.split("=", 1)[1]
                if spec.startswith("+"):
                    once("reveal_after", parse_delay(spec), word)
                else:
                    once("reveal_at", parse_time(spec), word)
            elif re.fullmatch(r"\d{1,2}:\d{2}", word):
                once("post_at", parse_time(word), word)
            elif looks_like_timezone(word):
                once("timezone", parse_timezone(word).key, word)
            elif looks_like_weekdays(lowered):
                once("weekdays", parse_weekdays(lowered), word)
            elif lowered in EVERYTHING:
                once("everything", True, word)
            elif lowered in DIFFICULTIES:
                difficulties.append(lowered)
            elif re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", lowered):
                topics.append(lowered)
            else:
                raise CommandError(f"{usage} (`{word}` is not a time, zone, day or topic)")
    except ScheduleError as error:
        raise CommandError(f"{error}. {usage}") from None
    if "reveal_at" in values and "reveal_after" in values:
        raise CommandError(f"{usage} (reveal at a time or after a delay, not both)")
    everything = bool(values.pop("everything", False))
    if everything and (topics or difficulties):
        raise CommandError(f"{usage} (`all` means every topic and difficulty: name none)")
    return ScheduleChange(
        post_at=values.get("post_at"),  # type: ignore[arg-type]
        timezone=values.get("timezone"),  # type: ignore[arg-type]
        weekdays=values.get("weekdays"),  # type: ignore[arg-type]
        reveal_at=values.get("reveal_at"),  # type: ignore[arg-type]
        reveal_after=values.get("reveal_after"),  # type: ignore[arg-type]
        topics=() if everything else tuple(dict.fromkeys(topics)) or None,
        difficulties=() if everything else tuple(dict.fromkeys(difficulties)) or None,
        answer_mode=values.get("answer_mode"),  # type: ignore[arg-type]
        digest=values.get("digest"),  # type: ignore[arg-type]
    )
