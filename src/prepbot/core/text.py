"""Plain-text rendering of neutral views: the console's output and every platform's fallback.

Pure; imports no database and no chat platform.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prepbot.core.digests import describe_digest
from prepbot.core.rotation import FEW_LEFT, FEW_MATCHING
from prepbot.core.views import (
    CALENDAR_WEEKS,
    LATE,
    MISSED,
    NO_ROUND,
    ON_TIME,
    OPEN,
    DigestCard,
    DigestPoint,
    ErrorView,
    FeedbackView,
    HelpView,
    LeaderboardView,
    Notice,
    PendingReveal,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SearchResults,
    StatusView,
    StreakView,
    TopicsView,
    View,
    answer_count_line,
    calendar_start,
    credit_items,
    others,
)

ANSWERS_COUNT_AT_REVEAL = "Answers to an open question count after its reveal."


def local_time(moment: datetime, timezone: str | None) -> str:
    """Return a moment as 'Tue 3 Mar 17:00 Europe/London' in the given zone (UTC if unknown)."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):  # a zone a tzdata update removed
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {zone.key}"


def relative(moment: datetime, now: datetime) -> str:
    """Return how far a moment is from now: 'in 3 h 20 min', '5 min ago', 'now'."""
    delta = moment - now
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        return "now"
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        span = f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")
    elif hours:
        span = f"{hours} h" + (f" {minutes} min" if minutes else "")
    else:
        span = f"{minutes} min"
    return f"in {span}" if delta > timedelta(0) else f"{span} ago"


ANSWER_MODES = {
    "thread": "in the question's thread, for everyone to read (`answers=private` hides them)",
    "private": "🔒 private until the reveal: Answer button or `/prep answer`; published at "
    "the reveal (`answers=thread` opens them)",
}


def answer_mode_words(mode: str) -> str:
    """Return how a group answers, in a sentence for a confirmation."""
    if mode == "private":
        return (
            "Answers are private until the reveal: press Answer on the question (or use "
            "`/prep answer <text>`); the reveal publishes them."
        )
    return "Answer each question in its thread."


DAY_MARKS = {ON_TIME: "🟩", LATE: "🟨", MISSED: "🟥", OPEN: "🟦", NO_ROUND: "⬜"}
CALENDAR_LEGEND = "🟩 on time · 🟨 late · 🟥 missed · 🟦 open · ⬜ no round"


def streak_calendar_lines(view: StreakView) -> list[str]:
    """Return a member's calendar as text: a row per weekday, a square per week, and a legend.

    Empty when the view has no calendar; days after the group's today are left out.
    """
    if view.today is None:
        return []
    first = calendar_start(view.today)
    states = dict(view.calendar)
    rows = []
    for weekday in range(7):
        marks = []
        for week in range(CALENDAR_WEEKS):
            day = first + timedelta(weeks=week, days=weekday)
            if day <= view.today:
                marks.append(DAY_MARKS[states.get(day, NO_ROUND)])
        rows.append(f"{first + timedelta(days=weekday):%a} {''.join(marks)}")
    since = f"{first:%a} {first.day} {first:%b}"
    return [f"The last {CALENDAR_WEEKS} weeks (from {since}):", *rows, CALENDAR_LEGEND]


def digest_title(card: DigestCard) -> str:
    """Return a digest's heading: the group and the days it sums up."""
    return (
        f"📅 Weekly digest — #{card.group}, "
        f"{card.period_start:%a %d %b} to {card.period_end:%a %d %b %Y}"
    )


def digest_point_line(point: DigestPoint) -> str:
    """Return one key point of a digest with how often the week's graded answers made it."""
    return f"{point.point} — {point.title} ({point.made}/{point.graded}, {point.share:.0%})"


def digest_lines(card: DigestCard) -> list[str]:
    """Return a digest as plain text lines: rounds, participation, coverage, milestones, leaders."""
    lines = [digest_title(card)]
    lines.append(
        f"{card.answers:,} answer{'s' if card.answers != 1 else ''} from {card.members:,} "
        f"member{'s' if card.members != 1 else ''} across {len(card.rounds)} "
        f"question{'s' if len(card.rounds) != 1 else ''}."
    )
    lines.append("Questions:")
    for round_ in card.rounds:
        where = f" — {round_.link}" if round_.link else ""
        lines.append(
            f"• {round_.local_date:%a %d %b}: {round_.title}{where} "
            f"({round_.on_time} on time, {round_.late} late)"
        )
    if card.most_covered:
        lines.append("Covered most:")
        lines += [f"• {digest_point_line(p)}" for p in card.most_covered]
    if card.least_covered:
        lines.append("Covered least (worth a second look):")
        lines += [f"• {digest_point_line(p)}" for p in card.least_covered]
    for milestone in card.milestones:
        lines.append(f"🔥 {milestone.member.name} reached a {milestone.streak}-round streak")
    if card.leaders:
        lines.append("Leaders this week:")
        lines += [
            f"{rank}. {row.member.name} — {row.on_time} on time, {row.points} key points, "
            f"streak {row.streak}"
            for rank, row in enumerate(card.leaders, start=1)
        ]
    if card.archive_link:
        lines.append(f"Archive: {card.archive_link}")
    return lines


def status_title(view: StatusView) -> str:
    """Return the heading of a study group's status."""
    return f"📋 Study group status — {view.channel}"


def status_lines(view: StatusView) -> list[tuple[str, str]]:
    """Return a study group's status as (label, plain text) lines, for every platform."""

    def when(moment: datetime) -> str:
        return f"{local_time(moment, view.timezone)} ({relative(moment, view.now)})"

    filters = []
    if view.topics:
        filters.append("topics " + ", ".join(view.topics))
    if view.difficulties:
        filters.append("difficulty " + "/".join(view.difficulties))
    day = view.today_date
    today = {
        "none": "no question yet",
        "off": "no question (not one of the group's days)",
        "claimed": "the question is being posted",
        "posted": "question posted, answers open",
        "revealed": "question posted and revealed",
    }.get(view.today, view.today)
    lines = [
        (
            "Schedule",
            f"posts at {view.post_at} ({view.days}, {view.timezone}); reveal {view.reveal}",
        ),
        ("Filters", "; ".join(filters) if filters else "none (every scenario in the bank)"),
        ("Answers", ANSWER_MODES.get(view.answer_mode, view.answer_mode)),
        ("Weekly digest", describe_digest(view.digest)),
        (f"Today ({day:%a} {day.day} {day:%b})", today),
    ]
    if view.next_post is not None:
        lines.append(("Next question", when(view.next_post)))
    else:
        lines.append(("Next question", "none while the group is paused"))
    if view.next_reveal is not None:
        after = "" if view.next_reveal_is_open_round else ", after the next question"
        lines.append(("Next reveal", when(view.next_reveal) + after))
    if view.paused:
        since = (
            f"since {local_time(view.paused_since, view.timezone)} — " if view.paused_since else ""
        )
        detail = f" ({view.pause_detail})" if view.pause_detail else ""
        lines.append(("⏸ Paused", f"{since}{view.pause_cause}{detail}. {view.pause_next_step}."))
    else:
        lines.append(("State", "active (not paused)"))
    rotation = (
        f"{view.rotation_left} of {view.eligible} matching scenarios unused in cycle "
        f"{view.rotation_cycle}"
    )
    if view.eligible and view.rotation_left == 0:
        rotation += f"; the next question starts cycle {view.rotation_cycle + 1}"
    else:
        rotation += "; none repeats before all are used"
    lines.append(("Rotation", rotation))
    if view.eligible < FEW_MATCHING:
        lines.append(("⚠ Small bank", few_matching_notice(view.eligible)))
    elif view.rotation_left < FEW_LEFT:
        left = view.rotation_left
        lines.append(
            (
                "⚠ Rotation running out",
                f"{left} unused scenario{'s' if left != 1 else ''} left in this cycle; then "
                "questions repeat. Widen the topics with /prep schedule, or add a content pack.",
            )
        )
    if view.problems:
        lines += [
            (
                f"⚠ Problem ({problem.component})",
                f"{problem.message} (since {local_time(problem.since, view.timezone)})",
            )
            for problem in view.problems
        ]
    else:
        lines.append(("Problems", "none"))
    return lines


def pending_words(pending: int) -> str:
    """Return ' (+1 answer counts at the reveal)' for on-time answers not revealed yet."""
    if not pending:
        return ""
    if pending == 1:
        return " (+1 answer counts at the reveal)"
    return f" (+{pending} answers count at the reveal)"


def channel_name(pending: PendingReveal) -> str:
    """Return an open round's channel as '#name'."""
    return f"#{pending.channel_name or pending.channel_id}"


def withheld_text(
    pending: tuple[PendingReveal, ...],
    where: str = "this community",
    channel: Callable[[PendingReveal], str] = channel_name,
) -> str:
    """Say that an open round's reveal is withheld, and in which channel and when it comes."""
    places = " and ".join(f"in {channel(p)} {local_time(p.reveal_at, p.timezone)}" for p in pending)
    return (
        f"🔒 This question is open in {where} right now, so its key insights, trap and "
        f"follow-ups stay hidden until the reveal: {places}."
    )


def render_text(view: View) -> str:
    """Render any view as plain text."""
    match view:
        case QuestionCard():
            return _question(view)
        case RevealCard():
            return _reveal(view)
        case ScenarioDetail():
            if view.reveal is None:
                return _question(view.question) + "\n\n" + withheld_text(view.withheld)
            return _question(view.question) + "\n\n" + _reveal(view.reveal)
        case LeaderboardView():
            return _leaderboard(view)
        case StreakView():
            line = (
                f"@{view.member.name}: streak {view.current} (best {view.best}), "
                f"{view.on_time} on time, {view.late} late{pending_words(view.pending)}"
            )
            return "\n".join([line, *streak_calendar_lines(view)])
        case SearchResults():
            if not view.results:
                return f"No scenario matches '{view.query}'. Try fewer or other words."
            lines = [f"Scenarios matching '{view.query}':"]
            for number, hit in enumerate(view.results, start=1):
                company = f" ({hit.company})" if hit.company else ""
                lines.append(f"{number}. {hit.title}{company} — /prep show {hit.scenario_id}")
            return "\n".join(lines)
        case TopicsView():
            lines = ["Topics (scenarios):"]
            lines += [f"• {t.id} — {t.name} ({t.scenarios})" for t in view.topics]
            return "\n".join(lines)
        case HelpView():
            return _help(view)
        case StatusView():
            lines = [status_title(view)]
            lines += [f"{label}: {text}" for label, text in status_lines(view)]
            return "\n".join(lines)
        case Notice():
            return view.text
        case ErrorView():
            return f"⚠ {view.text}"
        case FeedbackView():
            return _feedback(view)


STUFFED_NOTE = (
    "Your answer read as a list of terms, so it earned less credit: say what each one does "
    "and why it answers the question."
)


def feedback_title(view: FeedbackView) -> str:
    """Return the first line of a member's feedback."""
    day = view.round_date
    return (
        f"📝 Your answer to “{view.title}” ({day:%a} {day.day} {day:%b}): "
        f"{view.points} of {view.total} key points"
    )


def _feedback(view: FeedbackView) -> str:
    lines = [feedback_title(view)]
    if view.made:
        lines += ["You made:", *(f"✅ {p}" for p in view.made)]
    if view.missed:
        lines += ["Still to cover next time:", *(f"⬜ {p}" for p in view.missed)]
    if view.red_flags:
        lines += ["Watch out:", *(f"⚠ {f}" for f in view.red_flags)]
    if view.stuffed:
        lines.append(STUFFED_NOTE)
    lines.append(
        f"See it again with /prep feedback {view.scenario_id}; turn these messages off "
        "with /prep feedback off."
    )
    return "\n".join(lines)


def coverage_lines(card: RevealCard) -> list[str]:
    """Return the reveal's group line: per key point, how many answers made it."""
    if not card.coverage or not card.graded:
        return []
    answers = f"{card.graded} answer{'s' if card.graded != 1 else ''}"
    return [
        f"How the group did ({answers} on time):",
        *(f"• {c.made}/{card.graded} — {c.point}" for c in card.coverage),
    ]


def few_matching_notice(count: int) -> str:
    """Return the warning for filters that match too few scenarios to last long."""
    return (
        f"Only {count} scenario{'s' if count != 1 else ''} match this group's topics and "
        f"difficulty, so questions repeat every {count} round{'s' if count != 1 else ''}. "
        "Add topics with /prep schedule, or clear the filters with /prep schedule all "
        "(/prep topics shows the counts)."
    )


def rotation_notice(left: int) -> str:
    """Return the line a question carries when the group's rotation is about to start over."""
    if left == 0:
        when = "This is the last unused question of the rotation: the next one starts it over"
    else:
        when = (
            f"Only {left} unused question{'s' if left != 1 else ''} left before this group's "
            "rotation starts over"
        )
    return f"🔁 {when}. Admins: widen the topics with /prep schedule, or add a content pack."


def answer_here(card: QuestionCard, *, button: str = "Answer", reveal: str | None = None) -> str:
    """Return the line under a round's question that says how to answer it, and when it reveals.

    ``reveal`` replaces the reveal time's words (a platform's own date token, say).
    """
    if reveal is None:
        reveal = local_time(card.reveal_at, card.timezone) if card.reveal_at else "at the reveal"
    if card.private:
        return (
            f"🔒 Answers are private until the reveal ({reveal}): press *{button}* "
            "(or `/prep answer <text>`); the reveal publishes them with their authors."
        )
    return f"Answer in this thread; key insights revealed {reveal}."


SHARED_TITLE = "🔓 The answers, private until now:"


def shared_more(more: int) -> str:
    """Return the line for private answers a reveal had no room to show."""
    return (
        f"…and {more:,} more answer{'s' if more != 1 else ''} that did not fit here; "
        "each author still gets their feedback."
    )


def _question(card: QuestionCard) -> str:
    if card.practice:
        header = "🧠 Practice question (just for you, not scored)"
    elif card.round_date is not None:
        day = card.round_date
        header = f"📅 Question of the day — {day:%a} {day.day} {day:%b %Y}"
    else:
        header = "📘 Scenario"
    who = " · ".join(p for p in (card.company, card.role) if p)
    lines = [header, f"*{card.title}*"]
    if who:
        lines.append(who)
    lines += [card.situation, ""]
    if len(card.prompts) == 1:
        lines.append(f"❓ {card.prompts[0]}")
    else:
        lines += [f"❓ {n}. {p}" for n, p in enumerate(card.prompts, start=1)]
    lines.append("")
    lines.append(
        f"{card.kind} · {card.difficulty} · {', '.join(card.topics)} · id {card.scenario_id}"
    )
    if card.reveal_at is not None:
        lines.append(answer_here(card))
    if card.private and card.answer_count is not None:
        lines.append(answer_count_line(card.answer_count))
    if card.rotation_left is not None:
        lines.append(rotation_notice(card.rotation_left))
    return "\n".join(lines)


def _reveal(card: RevealCard) -> str:
    lines = [f"💡 Reveal — {card.title}" if card.is_round else "💡 Key insights"]
    if card.shared:
        lines.append(SHARED_TITLE)
        for answer in card.shared:
            lines.append(f"@{answer.member.name}: {answer.text}")
        lines.append("")
    if card.is_round:
        lines.append("Key insights:")
    lines += [f"• {insight}" for insight in card.insights]
    if card.trap_answer:
        lines += ["", f"The trap: “{card.trap_answer}”", card.trap_why or ""]
    if card.follow_ups:
        lines += ["", "Follow-ups:", *(f"• {q}" for q in card.follow_ups)]
    handle = f" (@{card.source_handle})" if card.source_handle else ""
    lines += ["", f"Source: {card.source_author}{handle} — {card.source_url}"]
    if card.is_round:
        if coverage := coverage_lines(card):
            lines += ["", *coverage]
        credits = card.credits()
        if card.on_time:
            named = credit_items([f"@{m.name}" for m in credits.on_time], credits.on_time_more)
            lines.append(f"Answered on time: {', '.join(named)} — thank you!")
        else:
            lines.append("Nobody answered this one on time.")
        if card.late:
            named = credit_items([f"@{m.name}" for m in credits.late], credits.late_more)
            lines.append(f"Late answers: {', '.join(named)}")
        for milestone in credits.milestones:
            lines.append(f"🔥 @{milestone.member.name} reached a {milestone.streak}-round streak!")
        if rest := others(len(credits.milestones), credits.milestones_more):
            lines.append(f"🔥 …{rest} reached a streak milestone!")
    return "\n".join(lines)


def _leaderboard(view: LeaderboardView) -> str:
    since = f" since {view.since:%a} {view.since.day} {view.since:%b}" if view.since else ""
    title = f"🏆 Leaderboard — {view.scope}, {view.period}{since}"
    if not view.rows:
        empty = f"{title}\nNo answers yet. Reply in a question's thread to get on the board."
        return f"{empty}\n{ANSWERS_COUNT_AT_REVEAL}" if view.open_rounds else empty
    width = max(len(r.member.name) for r in view.rows) + 1
    lines = [title, f"{'#':>2}  {'member':<{width}}  on time  points  late  streak"]
    for row in view.rows:
        lines.append(
            f"{row.rank:>2}  {'@' + row.member.name:<{width}}  {row.on_time:>7}  "
            f"{row.points:>6}  {row.late:>4}  {row.streak:>6}"
        )
    if view.open_rounds:
        lines.append(ANSWERS_COUNT_AT_REVEAL)
    return "\n".join(lines)


def _help(view: HelpView) -> str:
    lines = ["prepbot — a daily interview-prep question; answer in its thread."]
    if view.subscription:
        lines.append(f"This channel: {view.subscription}")
    lines += [f"  {usage} — {what}" for usage, what in view.commands]
    if view.admin_commands:
        lines.append("Admins:")
        lines += [f"  {usage} — {what}" for usage, what in view.admin_commands]
    return "\n".join(lines)
