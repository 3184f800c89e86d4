"""Neutral views → Discord embeds (and the plain content that carries mentions).

Discord's limits are kept: title 256, description 4096, 25 fields of 1,024, 6,000 in all,
10 embeds per message. Member mentions go in the message content (embeds never ping). A
private-mode question says it carries the Answer button (``DiscordMessage.answer_button``:
the adapter attaches it); a reveal publishes the group's private answers, with their
authors' names (never pings), folded to fit. A weekly digest is one embed (its picture, when
attached, as the embed's image; a footer naming the week, which a repair finds it by) that
names members in bold and mentions nobody. Builds discord.py ``Embed`` objects only; no
network, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import discord

from prepbot.core.text import (
    SHARED_TITLE,
    answer_here,
    coverage_lines,
    digest_point_line,
    digest_title,
    local_time,
    render_text,
    rotation_notice,
    shared_more,
    status_lines,
    status_title,
    withheld_text,
)
from prepbot.core.views import (
    DigestCard,
    DigestPoint,
    ErrorView,
    MemberRef,
    PendingReveal,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SharedAnswer,
    StatusView,
    View,
    answer_count_line,
    credit_items,
    others,
    share_within,
)

TITLE, DESCRIPTION, FIELD_VALUE, FIELDS, TOTAL, CONTENT = 256, 4096, 1024, 25, 6000, 2000
FIELD_NAME = 256
QUESTION_COLOUR, REVEAL_COLOUR, ERROR_COLOUR = 0x3B82F6, 0x22C55E, 0xEF4444
PAUSED_COLOUR = 0xF59E0B
SHARED_COLOUR = 0x8B5CF6
ANSWER_BUTTON = "prep:answer"  # custom_id of the Answer button under a private-mode question
ANSWER_LABEL, ANSWER_EMOJI = "Answer", "✍️"
SHARED_NAME = 64  # an author's name in the reveal, at most
SHARED_EACH_AT_MOST = 1000  # characters of one shared answer, at most (before folding)
SHARED_EACH_AT_LEAST = 120  # characters of one shared answer, at least: past that, counted
SHARED_ROOM = 2500  # characters the shared answers get even when the insights are long
DIGEST_COLOUR = 0x0EA5E9
DIGEST_FOOTER = "prepbot weekly digest · week ending "  # + the ISO date: a repair's marker
FOLDED = "…and more than fits here."


@dataclass
class DiscordMessage:
    """What one Discord message says: content (mentions live here) and embeds."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    answer_button: bool = False
    """The message carries the Answer button (a private-mode round's question)."""


def clip(text: str, limit: int) -> str:
    """Shorten text to ``limit`` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mention(member: MemberRef) -> str:
    """Return a Discord user mention (ids are numeric snowflakes)."""
    return f"<@{member.id}>" if member.id.isdigit() else f"@{member.name}"


def render(view: View) -> DiscordMessage:
    """Render a view as a Discord message."""
    match view:
        case QuestionCard():
            private_round = view.private and view.reveal_at is not None
            return DiscordMessage(embeds=[question_embed(view)], answer_button=private_round)
        case RevealCard():
            return reveal_message(view)
        case ScenarioDetail():
            if view.reveal is None:
                text = withheld_text(view.withheld, "this server", channel_link)
                withheld = discord.Embed(description=clip(text, DESCRIPTION))
                return DiscordMessage(embeds=[question_embed(view.question), withheld])
            reveal = reveal_message(view.reveal)
            return DiscordMessage(embeds=[question_embed(view.question), *reveal.embeds])
        case StatusView():
            return DiscordMessage(embeds=[status_embed(view)])
        case ErrorView():
            embed = discord.Embed(
                description=clip(f"⚠️ {view.text}", DESCRIPTION), colour=ERROR_COLOUR
            )
            return DiscordMessage(embeds=[embed])
        case _:
            text = render_text(view)
            embed = discord.Embed(description=clip(text, DESCRIPTION))
            return DiscordMessage(embeds=[embed])


def question_embed(card: QuestionCard) -> discord.Embed:
    """Return the question of the day as an embed."""
    who = " · ".join(p for p in (card.company, card.role) if p)
    lines = [f"*{who}*" if who else "", card.situation, ""]
    if len(card.prompts) == 1:
        lines.append(f"❓ **{card.prompts[0]}**")
    else:
        lines += [f"❓ **{n}. {p}**" for n, p in enumerate(card.prompts, start=1)]
    if card.reveal_at is not None and card.private:
        lines += ["", answer_here(card, button=ANSWER_LABEL)]
        if card.answer_count is not None:
            lines.append(answer_count_line(card.answer_count))
    elif card.reveal_at is not None:
        unix = int(card.reveal_at.timestamp())
        lines += ["", f"Reply in this thread to answer. Key insights revealed <t:{unix}:F>."]
    elif card.practice:
        lines += ["", "Practice question — only you can see this; it is not scored."]
    if card.rotation_left is not None:
        lines += ["", rotation_notice(card.rotation_left)]
    embed = discord.Embed(
        title=clip(card.title, TITLE),
        description=clip("\n".join(lines).strip(), DESCRIPTION),
        colour=QUESTION_COLOUR,
    )
    footer = f"{card.kind} · {card.difficulty} · {', '.join(card.topics)} · id {card.scenario_id}"
    if card.reveal_at is not None and card.timezone:
        footer += f" · reveal {local_time(card.reveal_at, card.timezone)}"
    embed.set_footer(text=clip(footer, 2048))
    return embed


def status_embed(view: StatusView) -> discord.Embed:
    """Return a study group's status: a field per fact, amber while the group is paused."""
    embed = discord.Embed(
        title=clip(status_title(view), TITLE),
        colour=PAUSED_COLOUR if view.paused else REVEAL_COLOUR,
    )
    lines = [(clip(label, TITLE), clip(text, FIELD_VALUE)) for label, text in status_lines(view)]
    budget = TOTAL - len(embed) - 100  # room for the line that says what was left out
    for index, (name, value) in enumerate(lines):
        last_slot = len(embed.fields) == FIELDS - 1 and index < len(lines) - 1
        if len(name) + len(value) > budget or last_slot:
            rest = len(lines) - index
            embed.add_field(name="…", value=f"and {rest} more lines than fit here", inline=False)
            break
        embed.add_field(name=name, value=value, inline=False)
        budget -= len(name) + len(value)
    return embed


def reveal_message(card: RevealCard) -> DiscordMessage:
    """Return the reveal: an embed with insights, trap, follow-ups and credit; mentions outside."""
    insights = "\n".join(f"• {i}" for i in card.insights)
    embed = discord.Embed(
        title=clip(f"💡 Key insights — {card.title}", TITLE),
        description=clip(insights, DESCRIPTION),
        colour=REVEAL_COLOUR,
    )
    if card.trap_answer:
        trap = f"“{card.trap_answer}”\n{card.trap_why or ''}"
        embed.add_field(name="The trap", value=clip(trap, FIELD_VALUE), inline=False)
    if card.follow_ups:
        follow = "\n".join(f"• {q}" for q in card.follow_ups)
        embed.add_field(name="Follow-ups", value=clip(follow, FIELD_VALUE), inline=False)
    handle = f" (@{card.source_handle})" if card.source_handle else ""
    credit = (
        f"[{card.source_author}]({card.source_url}){handle}"
        if card.source_url
        else card.source_author
    )
    embed.add_field(name="Source", value=clip(credit, FIELD_VALUE), inline=False)
    if card.is_round and (coverage := coverage_lines(card)):
        embed.add_field(
            name=clip(coverage[0], FIELD_NAME),
            value=clip("\n".join(coverage[1:]), FIELD_VALUE),
            inline=False,
        )
    _fit(embed)
    embeds = [embed]
    if card.shared:
        fixed = len(embed) - len(embed.description or "")
        room = max(TOTAL - len(embed), min(SHARED_ROOM, TOTAL - fixed - 500))
        shared = shared_embed(card.shared, min(room, DESCRIPTION))
        _fit(embed, TOTAL - len(shared))
        embeds = [shared, embed]
    content, ids = "", []
    if card.is_round:
        credits = card.credits()  # at most MAX_MENTIONS members: the rest are counted
        if card.on_time:
            named = credit_items([mention(m) for m in credits.on_time], credits.on_time_more)
            content = f"Answered on time: {', '.join(named)} — thank you!"
        else:
            content = "Nobody answered this one on time."
        if card.late:
            named = credit_items([mention(m) for m in credits.late], credits.late_more)
            content += f"\nLate answers: {', '.join(named)}"
        for milestone in credits.milestones:
            content += (
                f"\n🔥 {mention(milestone.member)} reached a {milestone.streak}-round streak!"
            )
        if rest := others(len(credits.milestones), credits.milestones_more):
            content += f"\n🔥 …{rest} reached a streak milestone!"
        mentioned = (*credits.on_time, *credits.late, *(m.member for m in credits.milestones))
        ids = list(dict.fromkeys(int(m.id) for m in mentioned if m.id.isdigit()))
    return DiscordMessage(content=clip(content, CONTENT), embeds=embeds, mentions=ids)


def shared_embed(answers: tuple[SharedAnswer, ...], room: int) -> discord.Embed:
    """Return the private answers made public, with their authors' names, within ``room``.

    Long answers are folded so that every author gets a share; answers past the room are
    counted in a last line. Names are plain (bold), never mentions: nobody is pinged.
    """
    title = clip(SHARED_TITLE, TITLE)
    room = max(room - len(title), 200)
    names = [
        f"**{clip(discord.utils.escape_markdown(a.member.name), SHARED_NAME)}**: " for a in answers
    ]
    each = max(len(n) for n in names) + 2  # a name and the blank line between answers
    last = len(shared_more(len(answers))) + 2
    fits = max(min(len(answers), (room - last) // (SHARED_EACH_AT_LEAST + each)), 1)
    budget = room - last - each * fits
    while True:
        shown, more = share_within(
            answers,
            budget=max(budget, SHARED_EACH_AT_LEAST),
            each_at_most=SHARED_EACH_AT_MOST,
            each_at_least=SHARED_EACH_AT_LEAST,
        )
        lines = [f"{names[i]}{a.text}" for i, a in enumerate(shown)]
        if more:
            lines.append(shared_more(more))
        text = "\n\n".join(lines)
        if len(text) <= room or budget <= SHARED_EACH_AT_LEAST:
            break
        budget -= len(text) - room + 50
    return discord.Embed(title=title, description=clip(text, room), colour=SHARED_COLOUR)


def digest_message(card: DigestCard, picture: str | None = None) -> DiscordMessage:
    """Return a weekly digest as one embed; ``picture`` names an attached image to show in it.

    The rounds and the week's answers are the description, coverage, streak milestones and
    leaders are fields, and the footer names the week (``digest_footer``). The title links to
    the group's archive when there is one. Members are named in bold: nobody is mentioned.
    """
    embed = discord.Embed(
        title=clip(digest_title(card), TITLE),
        url=card.archive_link or None,
        colour=DIGEST_COLOUR,
    )
    fields: list[tuple[str, list[str]]] = []
    if card.most_covered:
        fields.append(("✅ Covered most", _point_lines(card.most_covered)))
    if card.least_covered:
        fields.append(("🔍 Covered least (worth a second look)", _point_lines(card.least_covered)))
    if card.milestones:
        streaks = [
            f"• {_bold_name(m.member.name)} reached a {m.streak}-round streak"
            for m in card.milestones
        ]
        fields.append(("🔥 Streak milestones", streaks))
    if card.leaders:
        leaders = [
            f"{rank}. {_bold_name(row.member.name)} — {row.on_time:,} on time · "
            f"{row.points:,} key points · streak {row.streak}"
            for rank, row in enumerate(card.leaders, start=1)
        ]
        fields.append(("🏆 Leaders this week", leaders))
    for name, lines in fields:
        embed.add_field(name=name, value=fold_lines(lines, FIELD_VALUE), inline=False)
    embed.set_footer(text=digest_footer(card))
    if picture is not None:
        embed.set_image(url=f"attachment://{picture}")
    room = min(DESCRIPTION, TOTAL - len(embed))
    archive = [f"📚 Every round so far: {_link('the study group archive', card.archive_link)}"]
    embed.description = fold_lines(
        _digest_lines(card), room, tail=["", *archive] if card.archive_link else []
    )
    return DiscordMessage(embeds=[embed])


def digest_footer(card: DigestCard) -> str:
    """Return a digest's footer: it names the week, so the bot's own post can be found again."""
    return f"{DIGEST_FOOTER}{card.period_end.isoformat()}"


def digest_thread_name(card: DigestCard) -> str:
    """Return the name of a digest's forum post: 'Weekly digest — Mon 23 Nov to Sun 29 Nov 2026'."""
    start, end = card.period_start, card.period_end
    return clip(f"Weekly digest — {start:%a %d %b} to {end:%a %d %b %Y}", 100)


def with_picture(embeds: list[discord.Embed], filename: str) -> list[discord.Embed]:
    """Return copies of ``embeds`` whose first shows the attached picture ``filename``."""
    if not embeds:
        return []
    first = embeds[0].copy()
    first.set_image(url=f"attachment://{filename}")
    return [first, *embeds[1:]]


def fold_lines(lines: list[str], limit: int, *, tail: list[str] | None = None) -> str:
    """Join lines within ``limit`` characters, dropping the last ones (and saying so).

    ``tail`` (a link that must survive) is kept after the fold when it fits.
    """
    end = tail or []
    joined = "\n".join([*lines, *end])
    if len(joined) <= limit:
        return joined
    kept = [clip(line, limit) for line in lines]
    while kept and len("\n".join([*kept, FOLDED, *end])) > limit:
        kept.pop()
    return clip("\n".join([*kept, FOLDED, *end]), limit)


def _digest_lines(card: DigestCard) -> list[str]:
    """Return a digest's description: the week's questions, then how many answered."""
    lines = ["**Questions**"]
    for round_ in card.rounds:
        lines.append(
            f"• {round_.local_date:%a %d %b} — {_link(round_.title, round_.link)} — "
            f"{round_.on_time:,} answered on time, {round_.late:,} late"
        )
    if not card.rounds:
        lines.append("No questions this week.")
    if card.answers:
        answers = f"{card.answers:,} answer{'s' if card.answers != 1 else ''}"
        members = f"{card.members:,} member{'s' if card.members != 1 else ''}"
        lines += ["", f"👥 {answers} from {members}"]
    else:
        lines += ["", "👥 No answers this week."]
    return lines


def _point_lines(points: tuple[DigestPoint, ...]) -> list[str]:
    """Return a digest's key points, each with how often the graded answers made it."""
    return [f"• {_plain(digest_point_line(point))}" for point in points]


def _plain(text: str) -> str:
    """Return text that Discord shows as written: no markdown, no mention (nobody pinged)."""
    flat = discord.utils.escape_mentions(discord.utils.escape_markdown(" ".join(text.split())))
    return flat.replace("<@", "<\u200b@").replace("<#", "<\u200b#")  # any id's length


def _bold_name(name: str) -> str:
    """Return a member's name in bold, never a mention."""
    return f"**{clip(_plain(name), SHARED_NAME) or '…'}**"


def _link(label: str, url: str | None) -> str:
    """Return a markdown link, its label escaped; the label alone, in bold, without a URL."""
    text = _plain(label) or "…"
    if not url:
        return f"**{text}**"
    text = text.replace("[", "\\[").replace("]", "\\]")
    safe = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return f"[{text}]({safe})"


def channel_link(pending: PendingReveal) -> str:
    """Return an open round's channel as a Discord channel mention, shown as #name."""
    return (
        f"<#{pending.channel_id}>" if pending.channel_id.isdigit() else f"#{pending.channel_name}"
    )


def _fit(embed: discord.Embed, limit: int = TOTAL) -> None:
    """Trim the description until the whole embed is within ``limit`` (Discord's 6,000)."""
    while len(embed) > limit and embed.description:
        embed.description = clip(embed.description, max(len(embed.description) - 200, 1))
