"""Block Kit rendering: how each neutral view looks in a Slack message.

Owns the translation of ``prepbot.core.views`` into Block Kit dicts that Slack accepts: mrkdwn
escaping, mentions, Slack date tokens, and staying within Slack's limits (3000 characters a
section, 150 a header, 10 elements a context block, 50 blocks a message). A private-mode
question carries the Answer button (action id ``prep_answer``) and its running count; a reveal
publishes the private answers, folded to a budget. A weekly digest is rendered twice: as
mrkdwn text within 4,000 characters (the comment of its uploaded picture) and as blocks (when it
goes without a picture); it names members in bold and never mentions them. Pure: it only
builds dicts and sends nothing. Must not import slack_bolt, slack_sdk, the database or the
services.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from prepbot.core.text import (
    ANSWERS_COUNT_AT_REVEAL,
    SHARED_TITLE,
    STUFFED_NOTE,
    answer_here,
    coverage_lines,
    digest_point_line,
    digest_title,
    feedback_title,
    local_time,
    pending_words,
    render_text,
    rotation_notice,
    shared_more,
    status_lines,
    status_title,
    streak_calendar_lines,
    withheld_text,
)
from prepbot.core.views import (
    DigestCard,
    DigestPoint,
    ErrorView,
    FeedbackView,
    HelpView,
    LeaderboardView,
    MemberRef,
    Notice,
    PendingReveal,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SearchResults,
    SharedAnswer,
    StatusView,
    StreakView,
    TopicsView,
    View,
    answer_count_line,
    credit_items,
    others,
    share_within,
)

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_MESSAGE_TEXT = 40_000
MAX_TAIL_BLOCKS = 10
ELLIPSIS = "…"
ANSWER_ACTION = "prep_answer"  # the Answer button on a private-mode question
ANSWER_BUTTON = "✍️ Answer"
SHARED_BUDGET = 12_000  # characters of private answers a reveal publishes, at most
SHARED_EACH_AT_MOST = 2_500  # one answer's share, at most (a section holds 3,000)
SHARED_EACH_AT_LEAST = 300  # one answer's share, at least: fewer answers shown, not stubs
DIGEST_COMMENT_MAX = 4000  # characters of a digest's text as its picture's comment, at most
DIGEST_FOLDED = "…and more than fits in one message."

Block = dict[str, Any]
Mention = Callable[[MemberRef], str]


@dataclass(frozen=True)
class SlackMessage:
    """A message as chat.postMessage takes it: fallback text and Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]


def default_mention(member: MemberRef) -> str:
    """Return a member as a Slack user mention, which Slack shows as their current name."""
    return f"<@{member.id}>"


def escape(text: str) -> str:
    """Escape the three characters Slack parses as control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_length(text: str) -> int:
    """Measure text in UTF-16 code units: never less than Slack counts, whichever it counts."""
    return len(text.encode("utf-16-le")) // 2


def link(url: str, label: str) -> str:
    """Return a mrkdwn link whose label is escaped and whose URL cannot break out of it."""
    safe_url = escape(url).replace("|", "%7C").replace(" ", "%20")
    return f"<{safe_url}|{escape(label)}>"


def slack_date(moment: datetime, timezone: str | None) -> str:
    """Return a Slack date token for a moment; its fallback names the time in ``timezone``."""
    fallback = escape(local_time(moment, timezone))
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def render(view: View, *, mention: Mention = default_mention) -> SlackMessage:
    """Render any view as a Slack message: plain-text fallback plus Block Kit blocks."""
    match view:
        case QuestionCard():
            blocks = question_blocks(view)
        case RevealCard():
            blocks = reveal_blocks(view, mention)
            view = replace(view, shared=shared_answers(view.shared)[0])  # the text, folded too
        case ScenarioDetail():
            blocks = scenario_blocks(view, mention)
        case LeaderboardView():
            blocks = leaderboard_blocks(view, mention)
        case StreakView():
            blocks = streak_blocks(view, mention)
        case SearchResults():
            blocks = search_blocks(view)
        case TopicsView():
            blocks = topics_blocks(view)
        case HelpView():
            blocks = help_blocks(view)
        case StatusView():
            blocks = status_blocks(view)
        case Notice():
            blocks = notice_blocks(view)
        case ErrorView():
            blocks = error_blocks(view)
        case FeedbackView():
            blocks = feedback_blocks(view)
    text = _clip(escape(render_text(view)), MAX_MESSAGE_TEXT) or ELLIPSIS
    return SlackMessage(text=text, blocks=blocks)


# -- one function per view ------------------------------------------------------------------


def question_blocks(card: QuestionCard) -> list[Block]:
    """Render a question of the day, practice question or looked-up question."""
    body, tail = _question_parts(card)
    return _fit(body, tail, _more_hint(card.scenario_id))


def reveal_blocks(card: RevealCard, mention: Mention = default_mention) -> list[Block]:
    """Render a reveal: key insights, the trap, follow-ups, credit and, for rounds, who answered."""
    body, tail = _reveal_parts(card, mention)
    return _fit(body, tail, _more_hint(card.scenario_id))


def scenario_blocks(view: ScenarioDetail, mention: Mention = default_mention) -> list[Block]:
    """Render a scenario in full: its question, a divider, then its reveal (unless withheld)."""
    question_body, question_tail = _question_parts(view.question)
    if view.reveal is None:
        return _fit(question_body, [*question_tail, _withheld(view.withheld)], "…")
    reveal_body, reveal_tail = _reveal_parts(view.reveal, mention)
    body = [*question_body, *question_tail, _divider(), *reveal_body]
    return _fit(body, reveal_tail, "…and more than fits in one Slack message.")


def leaderboard_blocks(view: LeaderboardView, mention: Mention = default_mention) -> list[Block]:
    """Render a leaderboard as one line a member, or how to get on an empty one."""
    since = f" since {view.since:%a} {view.since.day} {view.since:%b}" if view.since else ""
    header = _header(f"🏆 Leaderboard — {view.scope}, {view.period}{since}")
    tail = [_context(ANSWERS_COUNT_AT_REVEAL)] if view.open_rounds else []
    if not view.rows:
        return [
            header,
            _section("No answers yet. Reply in a question's thread to get on the board."),
            *tail,
        ]
    lines = [
        f"{row.rank}. {mention(row.member)} — {row.on_time} on time · {row.points} points · "
        f"streak {row.streak} · {row.late} late"
        for row in view.rows
    ]
    return _fit([header, *_sections(lines)], tail, "…and more members than fit in one message.")


def feedback_blocks(view: FeedbackView) -> list[Block]:
    """Render a member's private feedback: the key points made, missed and any red flags."""
    lines = [f"*{escape(feedback_title(view))}*"]
    lines += [f"✅ {escape(p)}" for p in view.made]
    lines += [f"⬜ {escape(p)}" for p in view.missed]
    lines += [f"⚠️ {escape(f)}" for f in view.red_flags]
    if view.stuffed:
        lines.append(escape(STUFFED_NOTE))
    again = (
        f"See it again: `/prep feedback {view.scenario_id}` · "
        "turn these messages off: `/prep feedback off`"
    )
    return [*_sections(lines), _context(again)]


def streak_blocks(view: StreakView, mention: Mention = default_mention) -> list[Block]:
    """Render one member's streak and totals."""
    flame = "🔥 " if view.current else ""
    blocks = [
        _section(
            f"{flame}{mention(view.member)}: streak *{view.current}* (best {view.best}) · "
            f"{view.on_time} on time · {view.late} late{escape(pending_words(view.pending))}"
        )
    ]
    if calendar := streak_calendar_lines(view):
        *grid, legend = calendar
        blocks += [_section(escape("\n".join(grid))), _context(escape(legend))]
    return blocks


def search_blocks(view: SearchResults) -> list[Block]:
    """Render search results, each with the command that shows it in full."""
    query = escape(view.query)
    if not view.results:
        return [_section(f"No scenario matches “{query}”. Try fewer or other words.")]
    lines = [f"🔎 Scenarios matching “{query}”:"]
    for number, hit in enumerate(view.results, start=1):
        company = f" ({escape(hit.company)})" if hit.company else ""
        lines.append(
            f"{number}. *{_inline(hit.title)}*{company} — `/prep show {escape(hit.scenario_id)}`"
        )
    return _fit(_sections(lines), [], "…and more results than fit in one message.")


def topics_blocks(view: TopicsView) -> list[Block]:
    """Render the topic vocabulary with how many scenarios each topic has."""
    lines = ["*Topics* (scenarios):"]
    lines += [f"• `{escape(t.id)}` — {escape(t.name)} ({t.scenarios})" for t in view.topics]
    return _fit(_sections(lines), [], "…and more topics than fit in one message.")


def help_blocks(view: HelpView) -> list[Block]:
    """Render how to use /prep: the commands, the admin commands, and this channel's state."""
    blocks = [_section("*prepbot* — a daily interview-prep question; answer in its thread.")]
    if view.subscription:
        blocks.append(_context(f"This channel: {escape(view.subscription)}"))
    blocks += _sections(f"{escape(usage)} — {escape(what)}" for usage, what in view.commands)
    if view.admin_commands:
        admin = [f"{escape(usage)} — {escape(what)}" for usage, what in view.admin_commands]
        blocks += _sections(["*Admins:*", *admin])
    return _fit(blocks, [], "…and more commands than fit in one message.")


def status_blocks(view: StatusView) -> list[Block]:
    """Render a study group's status: one bold-labelled line per fact, the pause set apart."""
    lines = [f"*{escape(label)}:* {escape(text)}" for label, text in status_lines(view)]
    return _fit(
        [_header(status_title(view)), *_sections(lines)],
        [],
        "…and more problems than fit in one message.",
    )


def notice_blocks(view: Notice) -> list[Block]:
    """Render a short confirmation or status line."""
    return [_section(escape(view.text) or ELLIPSIS)]


def error_blocks(view: ErrorView) -> list[Block]:
    """Render what cannot be done, and what to do instead."""
    return [_section(f":warning: {escape(view.text)}")]


def digest_message(card: DigestCard) -> SlackMessage:
    """Render a weekly digest: mrkdwn text for its picture's comment, and blocks to post alone.

    The text stays within DIGEST_COMMENT_MAX characters, its last lines folded away (the
    archive link kept); the blocks within Slack's 50. Members are named in bold, never pinged.
    """
    title = digest_title(card)
    parts = _digest_parts(card)
    tail = [_archive_line(card.archive_link)] if card.archive_link else []
    blocks = [_header(title)]
    for lines in parts:
        blocks += _sections(lines)
    text_lines = [f"*{_inline(title)}*"]
    for lines in parts:
        text_lines += ["", *(_clip(line, MAX_SECTION_TEXT) for line in lines)]
    text = _fold_lines(text_lines, ["", *tail] if tail else [], DIGEST_COMMENT_MAX)
    return SlackMessage(
        text=text, blocks=_fit(blocks, [_context(*tail)] if tail else [], DIGEST_FOLDED)
    )


# -- the parts of question and reveal cards -------------------------------------------------


def _question_parts(card: QuestionCard) -> tuple[list[Block], list[Block]]:
    """Return the blocks of a question: the body, then the tail that must survive a cut."""
    body = [_header(card.title)]
    labels: list[str] = []
    if card.practice:
        labels.append("🧠 Practice question — only you can see this, not scored")
    elif card.round_date is not None:
        day = card.round_date
        labels.append(f"📅 Question of the day — {day:%a} {day.day} {day:%b %Y}")
    who = " · ".join(escape(part) for part in (card.company, card.role) if part)
    if who:
        labels.append(who)
    if labels:
        body.append(_context(*labels))
    body += _sections([escape(card.situation)])
    if len(card.prompts) == 1:
        prompts = [f"❓ *{_inline(card.prompts[0])}*"]
    else:
        prompts = [f"❓ *{n}. {_inline(p)}*" for n, p in enumerate(card.prompts, start=1)]
    body += _sections(prompts)
    meta = " · ".join(
        [
            escape(card.kind),
            escape(card.difficulty),
            escape(", ".join(card.topics)),
            f"`{escape(card.scenario_id)}`",
        ]
    )
    tail = [_context(meta)]
    if card.private and card.reveal_at is not None:
        when = "\x00"  # the reveal time: a date token each reader sees in their own zone
        line = escape(answer_here(card, button=ANSWER_BUTTON, reveal=when))
        tail.append(_section(line.replace(when, slack_date(card.reveal_at, card.timezone))))
        tail.append(_answer_button())
        if card.answer_count is not None:
            tail.append(_context(escape(answer_count_line(card.answer_count))))
    elif card.reveal_at is not None:
        reveal = slack_date(card.reveal_at, card.timezone)
        tail.append(_section(f"💬 Reply in this thread to answer. Key insights revealed {reveal}."))
    if card.rotation_left is not None:
        tail.append(_context(escape(rotation_notice(card.rotation_left))))
    return body, tail


def _reveal_parts(card: RevealCard, mention: Mention) -> tuple[list[Block], list[Block]]:
    """Return the blocks of a reveal: the body, then credit and answers that survive a cut."""
    title = f"💡 Key insights — {card.title}" if card.is_round else "💡 Key insights"
    body = [_header(title)]
    body += _shared_sections(card.shared)
    body += _sections(f"• {escape(insight)}" for insight in card.insights)
    if card.trap_answer:
        trap = [f"*🪤 The trap:*{_quote(card.trap_answer)}"]
        if card.trap_why:
            trap.append(f"_Why it falls short:_ {escape(card.trap_why)}")
        body += _sections(trap)
    if card.follow_ups:
        body += _sections(["*Follow-ups*", *(f"• {escape(q)}" for q in card.follow_ups)])
    handle = f" (@{escape(card.source_handle)})" if card.source_handle else ""
    tail = [_context(f"Source: {link(card.source_url, card.source_author)}{handle}")]
    if card.is_round:
        coverage = coverage_lines(card)
        if coverage:
            tail += _sections([f"*{escape(coverage[0])}*", *(escape(c) for c in coverage[1:])])
        tail += _sections(_credit_lines(card, mention))
    return body, tail


def shared_answers(
    answers: tuple[SharedAnswer, ...],
) -> tuple[tuple[SharedAnswer, ...], int]:
    """Return the private answers a reveal shows, folded to its budget, and how many did not fit."""
    return share_within(
        answers,
        budget=SHARED_BUDGET,
        each_at_most=SHARED_EACH_AT_MOST,
        each_at_least=SHARED_EACH_AT_LEAST,
    )


def _shared_sections(answers: tuple[SharedAnswer, ...]) -> list[Block]:
    """Return the private answers a reveal publishes, each as '*name*: text' (no pings)."""
    if not answers:
        return []
    shown, more = shared_answers(answers)
    lines = [f"*{escape(SHARED_TITLE)}*"]
    # A name's own asterisks would end the bold early; it is shown without them.
    names = [_inline(a.member.name.replace("*", "")) or ELLIPSIS for a in shown]
    lines += [f"*{name}*: {escape(a.text)}" for name, a in zip(names, shown, strict=True)]
    if more:
        lines.append(f"_{escape(shared_more(more))}_")
    return _sections(lines)


def _credit_lines(card: RevealCard, mention: Mention) -> list[str]:
    """Return who answered on time, who answered late and whose streak reached a milestone."""
    credits = card.credits()
    if card.on_time:
        on_time = credit_items([mention(m) for m in credits.on_time], credits.on_time_more)
        lines = _listing("✅ Answered on time: ", on_time, " — thank you!")
    else:
        lines = ["Nobody answered this one on time."]
    if card.late:
        lines += _listing(
            "⏰ Late answers: ", credit_items([mention(m) for m in credits.late], credits.late_more)
        )
    lines += [
        f"🔥 {mention(milestone.member)} reached a {milestone.streak}-round streak!"
        for milestone in credits.milestones
    ]
    if rest := others(len(credits.milestones), credits.milestones_more):
        lines.append(f"🔥 …{rest} reached a streak milestone!")
    return lines


def _digest_parts(card: DigestCard) -> list[list[str]]:
    """Return a digest's mrkdwn lines, grouped: rounds, answers, coverage, streaks, leaders."""
    rounds = ["*Questions*"]
    for round_ in card.rounds:
        title = " ".join(round_.title.split()) or ELLIPSIS
        shown = link(round_.link, title) if round_.link else f"*{_inline(title)}*"
        rounds.append(
            f"• {round_.local_date:%a %d %b} — {shown} — {round_.on_time:,} answered on time, "
            f"{round_.late:,} late"
        )
    if not card.rounds:
        rounds.append("No questions this week.")
    if card.answers:
        answers = f"{card.answers:,} answer{'s' if card.answers != 1 else ''}"
        members = f"{card.members:,} member{'s' if card.members != 1 else ''}"
        participation = f"👥 {answers} from {members}"
    else:
        participation = "👥 No answers this week."
    parts = [rounds, [participation]]
    if card.most_covered:
        parts.append(["*✅ Covered most*", *_point_lines(card.most_covered)])
    if card.least_covered:
        heading = "*🔍 Covered least* (worth a second look)"
        parts.append([heading, *_point_lines(card.least_covered)])
    if card.milestones:
        streaks = [
            f"• {_bold_name(m.member)} reached a {m.streak}-round streak" for m in card.milestones
        ]
        parts.append(["*🔥 Streak milestones*", *streaks])
    if card.leaders:
        leaders = [
            f"{rank}. {_bold_name(row.member)} — {row.on_time:,} on time · "
            f"{row.points:,} key points · streak {row.streak}"
            for rank, row in enumerate(card.leaders, start=1)
        ]
        parts.append(["*🏆 Leaders this week*", *leaders])
    return parts


def _point_lines(points: tuple[DigestPoint, ...]) -> list[str]:
    """Return a digest's key points, each with how often the graded answers made it."""
    return [f"• {escape(digest_point_line(point))}" for point in points]


def _bold_name(member: MemberRef) -> str:
    """Return a member's name in bold, never a mention (a name's own asterisks dropped)."""
    return f"*{_inline(member.name.replace('*', '')) or ELLIPSIS}*"


def _archive_line(url: str) -> str:
    """Return the line that links a digest to its group's web archive."""
    return f"📚 Every round so far: {link(url, 'the study group archive')}"


def _withheld(pending: tuple[PendingReveal, ...]) -> Block:
    """Say that an open round's reveal is withheld here, and where and when it comes."""
    return _section(withheld_text(pending, "this workspace", _channel_link))


def _channel_link(pending: PendingReveal) -> str:
    """Return an open round's channel as a Slack channel link, shown as #name."""
    return f"<#{escape(pending.channel_id)}>"


def _more_hint(scenario_id: str) -> str:
    return f"…and more: `/prep show {escape(scenario_id)}`"


# -- text helpers ---------------------------------------------------------------------------


def _inline(text: str) -> str:
    """Escape text for a single bold line: Slack's *bold* does not span line breaks."""
    return escape(" ".join(text.split()))


def _quote(text: str) -> str:
    """Return escaped text as a mrkdwn block quote, on a line of its own."""
    return "".join(f"\n>{line}" for line in escape(text).splitlines())


def _listing(prefix: str, items: Sequence[str], suffix: str = "") -> list[str]:
    """Return 'prefix a, b, c suffix' as one line, or several if it would overflow a section."""
    lines: list[str] = []
    current = prefix
    size = slack_length(prefix) + slack_length(suffix)
    for index, item in enumerate(items):
        piece = item if index == 0 else ", " + item
        if index and size + slack_length(piece) + 1 > MAX_SECTION_TEXT:
            lines.append(current + ",")
            current, size = item, slack_length(item) + slack_length(suffix)
        else:
            current += piece
            size += slack_length(piece)
    lines.append(current + suffix)
    return lines


def _fold_lines(lines: list[str], tail: list[str], limit: int) -> str:
    """Join lines within ``limit``, dropping the last ones (and saying so); keep the tail."""
    joined = "\n".join([*lines, *tail])
    if slack_length(joined) <= limit:
        return joined
    kept = list(lines)
    while kept and slack_length("\n".join([*kept, DIGEST_FOLDED, *tail])) > limit:
        kept.pop()
    return _clip("\n".join([*kept, DIGEST_FOLDED, *tail]), limit)


def _clip(text: str, limit: int, *, mrkdwn: bool = True) -> str:
    """Shorten text to ``limit`` with an ellipsis, never cutting an entity, mention or link."""
    if slack_length(text) <= limit:
        return text
    budget = limit - slack_length(ELLIPSIS)
    cut = min(len(text), budget)
    while cut > 0 and (over := slack_length(text[:cut]) - budget) > 0:
        cut -= over
    head = text[:cut]
    if mrkdwn:
        amp = head.rfind("&")
        if amp > head.rfind(";"):
            head = head[:amp]
        angle = head.rfind("<")
        if angle > head.rfind(">"):
            head = head[:angle]
    return head.rstrip() + ELLIPSIS


def _sections(lines: Iterable[str], limit: int = MAX_SECTION_TEXT) -> list[Block]:
    """Pack mrkdwn lines into as few sections as fit the limit; clip a line too long alone."""
    chunks: list[str] = []
    current = ""
    for raw in lines:
        line = _clip(raw, limit)
        if current and slack_length(current) + 1 + slack_length(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current.strip():
        chunks.append(current)
    return [_section(chunk) for chunk in chunks]


# -- blocks ---------------------------------------------------------------------------------


def _header(text: str) -> Block:
    plain = " ".join(text.split()) or ELLIPSIS
    clipped = _clip(plain, MAX_HEADER_TEXT, mrkdwn=False)
    return {"type": "header", "text": {"type": "plain_text", "text": clipped, "emoji": True}}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}}


def _context(*texts: str) -> Block:
    elements = [
        {"type": "mrkdwn", "text": _clip(text, MAX_CONTEXT_TEXT)}
        for text in texts[:MAX_CONTEXT_ELEMENTS]
    ]
    return {"type": "context", "elements": elements}


def _answer_button() -> Block:
    """Return the actions block with the Answer button that opens the private answer modal."""
    button = {
        "type": "button",
        "action_id": ANSWER_ACTION,
        "text": {"type": "plain_text", "text": ANSWER_BUTTON, "emoji": True},
        "style": "primary",
        "value": "answer",
    }
    return {"type": "actions", "block_id": ANSWER_ACTION, "elements": [button]}


def _divider() -> Block:
    return {"type": "divider"}


def _fit(body: list[Block], tail: list[Block], more: str) -> list[Block]:
    """Return body + tail within Slack's 50 blocks, cutting the body and saying so."""
    if len(body) + len(tail) <= MAX_BLOCKS:
        return body + tail
    tail = tail[-MAX_TAIL_BLOCKS:]
    kept = body[: MAX_BLOCKS - 1 - len(tail)]
    while kept and kept[-1]["type"] == "divider":
        kept.pop()
    return [*kept, _context(more), *tail]
