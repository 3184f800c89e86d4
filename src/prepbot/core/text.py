"""Plain-text rendering of neutral views: the console's output and every platform's fallback.

Pure; imports no database and no chat platform.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from prepbot.core.views import (
    ErrorView,
    HelpView,
    LeaderboardView,
    MemberRef,
    Notice,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SearchResults,
    StreakView,
    TopicsView,
    View,
)


def mentions(members: tuple[MemberRef, ...]) -> str:
    """Return members as '@name' words joined by commas."""
    return ", ".join(f"@{m.name}" for m in members)


def local_time(moment: datetime, timezone: str | None) -> str:
    """Return a moment as 'Tue 3 Mar 17:00 Europe/London' in the given zone."""
    zone = ZoneInfo(timezone or "UTC")
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {zone.key}"


def render_text(view: View) -> str:
    """Render any view as plain text."""
    match view:
        case QuestionCard():
            return _question(view)
        case RevealCard():
            return _reveal(view)
        case ScenarioDetail():
            return _question(view.question) + "\n\n" + _reveal(view.reveal)
        case LeaderboardView():
            return _leaderboard(view)
        case StreakView():
            return (
                f"@{view.member.name}: streak {view.current} (best {view.best}), "
                f"{view.on_time} on time, {view.late} late"
            )
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
        case Notice():
            return view.text
        case ErrorView():
            return f"⚠ {view.text}"


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
        reveal = local_time(card.reveal_at, card.timezone)
        lines.append(f"Answer in this thread; key insights revealed {reveal}.")
    return "\n".join(lines)


def _reveal(card: RevealCard) -> str:
    lines = [f"💡 Reveal — {card.title}" if card.is_round else "💡 Key insights"]
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
        if card.on_time:
            lines.append(f"Answered on time: {mentions(card.on_time)} — thank you!")
        else:
            lines.append("Nobody answered this one on time.")
        if card.late:
            lines.append(f"Late answers: {mentions(card.late)}")
        for milestone in card.milestones:
            lines.append(f"🔥 @{milestone.member.name} reached a {milestone.streak}-round streak!")
    return "\n".join(lines)


def _leaderboard(view: LeaderboardView) -> str:
    since = f" since {view.since:%a} {view.since.day} {view.since:%b}" if view.since else ""
    title = f"🏆 Leaderboard — {view.scope}, {view.period}{since}"
    if not view.rows:
        return f"{title}\nNo answers yet. Reply in a question's thread to get on the board."
    width = max(len(r.member.name) for r in view.rows) + 1
    lines = [title, f"{'#':>2}  {'member':<{width}}  on time  late  streak"]
    for row in view.rows:
        lines.append(
            f"{row.rank:>2}  {'@' + row.member.name:<{width}}  {row.on_time:>7}  "
            f"{row.late:>4}  {row.streak:>6}"
        )
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
